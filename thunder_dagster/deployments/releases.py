"""The four moves of a deployment, each the pointer and the registry alias together.

- release: a verified build becomes a version folder under models/<agent>/<version>/, a new
  registry version, and the role's pointer and alias;
- promote: the challenger becomes the champion;
- retire: the challenger stops serving;
- rollback: the champion goes back to the one before it, or to a named earlier one;
- undeploy and redeploy: no server answers for the agent, then they do again.

Each returns what it did. The pointer is what the server serves, so it moves last on a release
(after the registry knows the version) and the alias follows it on the others.
"""

import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from thunder_dagster.deployments.pointers import (
    ROLES,
    Deployment,
    Undeployment,
    champion_stack,
    clear_undeployed,
    deployed_versions,
    mark_undeployed,
    read_pointer,
    record_event,
    remove_pointer,
    restore_champion,
    undeployment,
    write_pointer,
)
from thunder_dagster.deployments.registry import ModelRegistry
from thunder_dagster.deployments.versions import CHANGES, PATTERN, Version, next_version
from thunder_dagster.files import sha256_of
from thunder_dagster.modeling.cards import (
    CARD_NAME,
    KERAS_NAME,
    ONNX_NAME,
    STEP_NAME,
    TOKENIZER_NAME,
    ModelCard,
)


class UnverifiedArtifactError(RuntimeError):
    """A build whose files changed since its checks passed."""


class NothingToRollBackError(RuntimeError):
    pass


class NoChallengerError(RuntimeError):
    pass


class DeploymentStateError(RuntimeError):
    """An undeploy of an agent not deployed, or a redeploy of one that is."""


class RollbackTargetError(RuntimeError):
    """The version a rollback would return to is gone (pruned) or its files changed."""


@dataclass(frozen=True)
class Move:
    """One move of a role: which deployment serves it now, and which served it before."""

    role: str
    deployment: Deployment
    previous: Deployment | None

    def describe(self) -> str:
        was = self.previous.version if self.previous else "none"
        registry = self.deployment.registry_version or "unregistered"
        return (
            f"{self.deployment.agent_id} {self.role}: {was} -> {self.deployment.version} "
            f"(registry version {registry})"
        )


def release(
    models_dir: Path,
    deployments_dir: Path,
    agent_id: str,
    build_dir: Path,
    onnx_sha256: str,
    registry: ModelRegistry,
    change: str = "retrain",
    role: str = "champion",
    step_sha256: str | None = None,
    run_id: str | None = None,
    tags: dict | None = None,
) -> Move:
    """Copy a build to its version folder, register it, and point the role at it.

    The ONNX file must still hash to what its checks saw; a file changed since is refused.
    """
    if role not in ROLES:
        raise ValueError(f"role {role!r}: use one of {', '.join(ROLES)}")
    if change not in CHANGES:
        raise ValueError(f"change {change!r}: use one of {', '.join(CHANGES)}")
    card = ModelCard.read(build_dir)
    actual = sha256_of(build_dir / ONNX_NAME)
    if actual != onnx_sha256:
        raise UnverifiedArtifactError(
            f"{build_dir / ONNX_NAME} hashes to {actual[:12]}, not to the {onnx_sha256[:12]} "
            "its checks passed on; materialize onnx_model again before deploying"
        )
    has_step = (build_dir / STEP_NAME).is_file()
    if has_step and sha256_of(build_dir / STEP_NAME) != step_sha256:
        raise UnverifiedArtifactError(
            f"{build_dir / STEP_NAME} does not hash to what its step_parity check passed on; "
            "materialize onnx_model again before deploying"
        )
    champion = read_pointer(deployments_dir)
    previous = read_pointer(deployments_dir, role)
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
        next_version(existing, champion.family if champion else None, card.family, change)
    )
    target = models_dir / version
    staging = models_dir / f".{version}.staging"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    extra = [name for name in (STEP_NAME, TOKENIZER_NAME) if (build_dir / name).is_file()]
    for name in (KERAS_NAME, ONNX_NAME, *extra):
        shutil.copy2(build_dir / name, staging / name)
    # The card first: the registry's copy of the folder (an MLflow Model) carries it too.
    card = card.replace(version=version, build=str(build_dir), change=change)
    card.write(staging)
    registry_version = registry.register(
        agent_id, version, staging, run_id or card.mlflow_run_id, tags or {}
    )
    card.replace(registry_version=registry_version).write(staging)
    staging.rename(target)
    deployment = Deployment(
        agent_id=agent_id,
        version=version,
        family=card.family,
        model_dir=str(target),
        onnx_path=str(target / ONNX_NAME),
        onnx_sha256=actual,
        card_path=str(target / CARD_NAME),
        step_path=str(target / STEP_NAME) if has_step else None,
        step_sha256=step_sha256 if has_step else None,
        registry_version=registry_version,
        deployed_at=datetime.now(UTC).isoformat(),
    )
    write_pointer(deployments_dir, deployment, role)
    registry.set_alias(agent_id, role, registry_version)
    return Move(role, deployment, previous)


def promote(
    deployments_dir: Path, registry: ModelRegistry, by: str | None = None, reason: str | None = None
) -> Move:
    """The challenger becomes the champion (a rollback can undo it) and its pointer goes; the
    history says who asked and why when an operator did."""
    challenger = read_pointer(deployments_dir, "challenger")
    if challenger is None:
        raise NoChallengerError(f"{deployments_dir}: no challenger to promote")
    previous = read_pointer(deployments_dir)
    write_pointer(deployments_dir, challenger, "champion")
    asked = {"by": by, "reason": reason} if by else {}
    record_event(
        deployments_dir,
        {"action": "promote", "role": "challenger", "version": challenger.version, **asked},
    )
    remove_pointer(deployments_dir, "challenger")
    registry.set_alias(challenger.agent_id, "champion", challenger.registry_version)
    registry.remove_alias(challenger.agent_id, "challenger")
    return Move("champion", challenger, previous)


def retire(deployments_dir: Path, registry: ModelRegistry) -> Deployment:
    """The challenger stops serving; the champion keeps everyone."""
    challenger = read_pointer(deployments_dir, "challenger")
    if challenger is None:
        raise NoChallengerError(f"{deployments_dir}: no challenger to retire")
    record_event(
        deployments_dir, {"action": "retire", "role": "challenger", "version": challenger.version}
    )
    remove_pointer(deployments_dir, "challenger")
    registry.remove_alias(challenger.agent_id, "challenger")
    return challenger


def rollback(deployments_dir: Path, registry: ModelRegistry, to_version: str | None = None) -> Move:
    """Move the champion's pointer and alias back: one champion back, or to `to_version`, a
    champion on record below the current one. The target's files are checked first; a version
    cleanup removed, or whose files changed, is refused and nothing moves."""
    stack = champion_stack(deployments_dir)
    if len(stack) < 2:
        raise NothingToRollBackError(
            f"{deployments_dir}: {len(stack)} deployment(s) on record, nothing earlier to roll "
            "back to"
        )
    current, earlier = stack[-1], stack[:-1]
    if to_version is None:
        target = earlier[-1]
    else:
        matches = [deployment for deployment in earlier if deployment.version == to_version]
        if not matches:
            names = ", ".join(deployment.version for deployment in reversed(earlier))
            raise NothingToRollBackError(
                f"{to_version} is not an earlier champion of {current.agent_id}: roll back to "
                f"one of {names}"
            )
        target = matches[-1]
    _check_files(target)
    record_event(
        deployments_dir,
        {"action": "rollback", "role": "champion", "from": current.version, "to": target.version},
    )
    restore_champion(deployments_dir, target)
    registry.set_alias(target.agent_id, "champion", target.registry_version)
    return Move("champion", target, current)


def undeploy(deployments_dir: Path, registry: ModelRegistry, by: str, reason: str) -> Undeployment:
    """No server answers for the agent from its next look on (404): the marker goes down and
    the serving aliases go; the pointers, the history and every model file stay."""
    current = undeployment(deployments_dir)
    if current is not None:
        raise DeploymentStateError(
            f"{deployments_dir.name} is already undeployed (since {current.at}, by {current.by}: "
            f"{current.reason}); redeploy it to serve again"
        )
    champion = read_pointer(deployments_dir)
    if champion is None:
        raise DeploymentStateError(f"{deployments_dir.name} has no champion to undeploy")
    marker = mark_undeployed(deployments_dir, by, reason)
    record_event(
        deployments_dir, {"action": "undeploy", "role": "champion", "by": by, "reason": reason}
    )
    for role in ("champion", "challenger"):
        registry.remove_alias(champion.agent_id, role)
    return marker


def redeploy(deployments_dir: Path, registry: ModelRegistry, by: str) -> list[Move]:
    """Serve the agent again from the pointers it had: the champion's files are checked first
    (a version cleanup removed, or whose files changed, is refused and it stays undeployed),
    then the marker goes and the aliases come back."""
    if undeployment(deployments_dir) is None:
        raise DeploymentStateError(f"{deployments_dir.name} is deployed: nothing to redeploy")
    champion = read_pointer(deployments_dir)
    if champion is None:
        raise DeploymentStateError(f"{deployments_dir.name} has no champion to serve again")
    _check_files(champion)
    record_event(deployments_dir, {"action": "redeploy", "role": "champion", "by": by})
    clear_undeployed(deployments_dir)
    moves = []
    for role in ("champion", "challenger"):
        deployment = read_pointer(deployments_dir, role)
        if deployment is not None:
            registry.set_alias(deployment.agent_id, role, deployment.registry_version)
            moves.append(Move(role, deployment, None))
    return moves


def _check_files(deployment: Deployment) -> None:
    files = [(deployment.onnx_path, deployment.onnx_sha256)]
    if deployment.step_path:
        files.append((deployment.step_path, deployment.step_sha256))
    for path, expected in files:
        if not Path(path).is_file():
            raise RollbackTargetError(
                f"{deployment.agent_id} {deployment.version}: {Path(path).name} is gone (cleanup "
                "keeps the newest versions and those a one-step rollback needs); roll back to a "
                "version still under models/ or deploy again"
            )
        if sha256_of(Path(path)) != expected:
            raise RollbackTargetError(
                f"{deployment.agent_id} {deployment.version}: {Path(path).name} changed since it "
                "was deployed; roll back to another version or deploy again"
            )
