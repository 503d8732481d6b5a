"""The deployment pointer a model server watches, its history, and rollback.

deployments/<agent>/current.json names the champion: written, fsynced and renamed over the old
one, so a reader sees one whole pointer or the other. history.jsonl records every deploy and
rollback; replaying it gives the stack of champions, whose top is the current one.
"""

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from thunder_dagster.documents.datasets import write_atomically

POINTER_NAME = "current.json"
CHALLENGER_NAME = "challenger.json"
TEACHER_NAME = "teacher.json"
# champion: serves everyone; challenger: serves the A/B share until promoted or retired;
# teacher: the larger model that answers when the champion is unsure.
POINTER_NAMES = {"champion": POINTER_NAME, "challenger": CHALLENGER_NAME, "teacher": TEACHER_NAME}
HISTORY_NAME = "history.jsonl"


@dataclass(frozen=True)
class Deployment:
    agent_id: str
    version: str
    family: str
    model_dir: str
    onnx_path: str
    onnx_sha256: str
    card_path: str
    registry_version: str | None
    deployed_at: str
    step_path: str | None = None
    step_sha256: str | None = None


class NothingToRollBackError(RuntimeError):
    pass


def read_pointer(deployments_dir: Path, name: str = POINTER_NAME) -> Deployment | None:
    path = deployments_dir / name
    if not path.is_file():
        return None
    return Deployment(**json.loads(path.read_text()))


def _append_history(deployments_dir: Path, event: dict) -> None:
    deployments_dir.mkdir(parents=True, exist_ok=True)
    with open(deployments_dir / HISTORY_NAME, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(event) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def history(deployments_dir: Path) -> list[dict]:
    path = deployments_dir / HISTORY_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def champion_stack(deployments_dir: Path) -> list[Deployment]:
    stack: list[Deployment] = []
    for event in history(deployments_dir):
        if event["action"] == "deploy" and event["role"] == "champion":
            stack.append(Deployment(**event["deployment"]))
        elif event["action"] == "rollback" and stack:
            stack.pop()
    return stack


def deployed_versions(deployments_dir: Path) -> list[str]:
    return [e["deployment"]["version"] for e in history(deployments_dir) if e["action"] == "deploy"]


def deploy(deployments_dir: Path, deployment: Deployment, role: str = "champion") -> None:
    """Point the server at `deployment`: the history line first, then the atomic pointer swap."""
    if role not in POINTER_NAMES:
        raise ValueError(f"role {role!r}: use one of {', '.join(POINTER_NAMES)}")
    name = POINTER_NAMES[role]
    _append_history(
        deployments_dir,
        {"action": "deploy", "role": role, "at": _now(), "deployment": asdict(deployment)},
    )
    write_atomically(deployments_dir / name, json.dumps(asdict(deployment), indent=2).encode())


def rollback(deployments_dir: Path) -> tuple[Deployment, Deployment]:
    """Move the pointer back to the champion before the current one; returns (from, to)."""
    stack = champion_stack(deployments_dir)
    if len(stack) < 2:
        raise NothingToRollBackError(
            f"{deployments_dir}: {len(stack)} deployment(s) on record, nothing earlier to roll "
            "back to"
        )
    current, previous = stack[-1], stack[-2]
    _append_history(
        deployments_dir,
        {
            "action": "rollback",
            "role": "champion",
            "at": _now(),
            "from": current.version,
            "to": previous.version,
        },
    )
    write_atomically(
        deployments_dir / POINTER_NAME, json.dumps(asdict(previous), indent=2).encode()
    )
    return current, previous


class NoChallengerError(RuntimeError):
    pass


def promote(deployments_dir: Path) -> Deployment:
    """The challenger becomes the champion (a rollback can undo it) and its pointer goes."""
    challenger = read_pointer(deployments_dir, CHALLENGER_NAME)
    if challenger is None:
        raise NoChallengerError(f"{deployments_dir}: no challenger to promote")
    deploy(deployments_dir, challenger, "champion")
    _append_history(
        deployments_dir,
        {"action": "promote", "role": "challenger", "at": _now(), "version": challenger.version},
    )
    (deployments_dir / CHALLENGER_NAME).unlink()
    return challenger


def retire(deployments_dir: Path) -> Deployment:
    """The challenger stops serving; the champion keeps everyone."""
    challenger = read_pointer(deployments_dir, CHALLENGER_NAME)
    if challenger is None:
        raise NoChallengerError(f"{deployments_dir}: no challenger to retire")
    _append_history(
        deployments_dir,
        {"action": "retire", "role": "challenger", "at": _now(), "version": challenger.version},
    )
    (deployments_dir / CHALLENGER_NAME).unlink()
    return challenger


def _now() -> str:
    return datetime.now(UTC).isoformat()
