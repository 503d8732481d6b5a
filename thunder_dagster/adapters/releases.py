"""An agent's adapters as releases: deployments/<agent>/adapter/ holds their versions
(versions/adapter-<n>/, the two adapter files and what the gates saw) and the same pointers and
history as a model's deployments (deployments/pointers.py), so promote, retire and rollback
(deployments/releases.py) move an adapter's roles as they move a model's. The folder is the
agent's own: an agent deployed with a model of its own keeps it beside its adapters.

The first adapter that passes the gates becomes the champion (the bare base is what it was
compared with); a later one is the challenger, promoted only by an A/B test of real answers.
"""

import json
import re
import shutil
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from thunder_dagster.deployments.pointers import (
    Deployment,
    pointer_path,
    read_pointer,
    write_pointer,
)
from thunder_dagster.deployments.releases import Move
from thunder_dagster.files import write_atomically

ADAPTER_FOLDER = "adapter"
FAMILY = "adapter"
GATES_NAME = "gates.json"  # what the gates saw (not a model card: the base has that)
VERSION = re.compile(r"adapter-(\d+)")


@dataclass(frozen=True)
class AdapterCard:
    """What the gates saw, kept beside the adapter's files."""

    base_sha256: str
    params: dict
    held_out_loss: dict[str, float]
    champion_loss: dict[str, float]
    parity_error: float
    examples: dict[str, int]
    mlflow_run_id: str | None = None


def adapter_dir(deployments_dir: Path) -> Path:
    """The agent's adapter releases, beside its model's deployment pointers."""
    return deployments_dir / ADAPTER_FOLDER


def ab_folder(deployments_dir: Path) -> Path:
    """The folder whose champion and challenger the agent's A/B test compares: its adapters'
    while an adapter is the challenger, else its model's."""
    folder = adapter_dir(deployments_dir)
    return folder if pointer_path(folder, "challenger").is_file() else deployments_dir


def next_version(folder: Path) -> str:
    versions = folder / "versions"
    taken = [
        int(match[1])
        for path in (versions.iterdir() if versions.is_dir() else ())
        if (match := VERSION.fullmatch(path.name))
    ]
    return f"adapter-{max(taken, default=0) + 1}"


def release_adapter(deployments_dir: Path, agent_id: str, adapter, card: AdapterCard) -> Move:
    """Write the adapter's version folder whole (an adapters.files.Adapter), then point the
    champion at it (the agent's first adapter) or the challenger (every later one)."""
    from thunder_dagster.adapters.files import ARRAYS_NAME, MANIFEST_NAME

    folder = adapter_dir(deployments_dir)
    version = next_version(folder)
    target = folder / "versions" / version
    staging = target.with_name(f".{version}.staging")
    shutil.rmtree(staging, ignore_errors=True)
    manifest = adapter.save(staging)
    write_atomically(staging / GATES_NAME, json.dumps(asdict(card), indent=2).encode())
    staging.rename(target)
    role = "champion" if read_pointer(folder) is None else "challenger"
    previous = read_pointer(folder, role)
    deployment = Deployment(
        agent_id=agent_id,
        version=version,
        family=FAMILY,
        model_dir=str(target),
        onnx_path=str(target / ARRAYS_NAME),
        onnx_sha256=manifest["sha256"],
        card_path=str(target / MANIFEST_NAME),
        registry_version=None,
        deployed_at=datetime.now(UTC).isoformat(),
    )
    write_pointer(folder, deployment, role)
    return Move(role, deployment, previous)
