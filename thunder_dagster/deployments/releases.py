"""Releasing a verified build: its files under models/<agent>/<version>/ and the pointer."""

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

from thunder_dagster.deployments.pointers import (
    Deployment,
    deploy,
    deployed_versions,
    read_pointer,
)
from thunder_dagster.deployments.versions import PATTERN, Version, next_version
from thunder_dagster.modeling.models import CARD_NAME, KERAS_NAME, ONNX_NAME, STEP_NAME, sha256_of


class UnverifiedArtefactError(RuntimeError):
    pass


def release(
    models_dir: Path,
    deployments_dir: Path,
    agent_id: str,
    build_dir: Path,
    onnx_sha256: str,
    change: str = "retrain",
    role: str = "champion",
    registry_version=None,
    step_sha256: str | None = None,
) -> Deployment:
    """Copy a build to its version folder and point the server at it.

    The ONNX file must still hash to what its checks saw; a file changed since is refused.
    `registry_version` is called with the version (a string) and returns the MLflow
    registry's version number, or None; it runs after the copy and before the pointer moves.
    """
    card = json.loads((build_dir / CARD_NAME).read_text())
    actual = sha256_of(build_dir / ONNX_NAME)
    if actual != onnx_sha256:
        raise UnverifiedArtefactError(
            f"{build_dir / ONNX_NAME} hashes to {actual[:12]}, not to the {onnx_sha256[:12]} "
            "its checks passed on; materialize onnx_model again before deploying"
        )
    has_step = (build_dir / STEP_NAME).is_file()
    if has_step and sha256_of(build_dir / STEP_NAME) != step_sha256:
        raise UnverifiedArtefactError(
            f"{build_dir / STEP_NAME} does not hash to what its step_parity check passed on; "
            "materialize onnx_model again before deploying"
        )
    champion = read_pointer(deployments_dir)
    existing = [Version.parse(v) for v in deployed_versions(deployments_dir)]
    # Released folders count too; a staging folder a crash left behind (".1.2.0.staging") not.
    existing += (
        [
            Version.parse(p.name)
            for p in models_dir.iterdir()
            if p.is_dir() and PATTERN.match(p.name)
        ]
        if models_dir.is_dir()
        else []
    )
    version = str(
        next_version(existing, champion.family if champion else None, card["family"], change)
    )
    target = models_dir / version
    staging = models_dir / f".{version}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name in (KERAS_NAME, ONNX_NAME, *([STEP_NAME] if has_step else [])):
        shutil.copy2(build_dir / name, staging / name)
    card |= {"version": version, "build": str(build_dir), "change": change}
    registry = registry_version(version) if registry_version else None
    card["registry_version"] = registry
    (staging / CARD_NAME).write_text(json.dumps(card, indent=2))
    staging.rename(target)
    deployment = Deployment(
        agent_id=agent_id,
        version=version,
        family=card["family"],
        model_dir=str(target),
        onnx_path=str(target / ONNX_NAME),
        onnx_sha256=actual,
        card_path=str(target / CARD_NAME),
        step_path=str(target / STEP_NAME) if has_step else None,
        step_sha256=step_sha256 if has_step else None,
        registry_version=registry,
        deployed_at=datetime.now(UTC).isoformat(),
    )
    deploy(deployments_dir, deployment, role)
    return deployment
