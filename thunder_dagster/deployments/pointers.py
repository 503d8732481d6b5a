"""The deployment pointers a model server watches, and their history.

deployments/<agent>/champion.json names the champion (challenger.json and teacher.json the
other roles): written, fsynced and renamed over the old one, so a reader sees one whole pointer
or the other. history.jsonl records every deploy, rollback, promotion and retirement; replaying
it gives the stack of champions, whose top is the current one. Moving a pointer together with
its registry alias is releases.py's work; this module only reads and writes the files.
"""

import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from thunder_dagster.files import write_atomically

CHAMPION_NAME = "champion.json"
CHALLENGER_NAME = "challenger.json"
TEACHER_NAME = "teacher.json"
# champion: serves everyone; challenger: serves the A/B share until promoted or retired;
# teacher: the larger model that answers when the champion is unsure.
POINTER_NAMES = {"champion": CHAMPION_NAME, "challenger": CHALLENGER_NAME, "teacher": TEACHER_NAME}
ROLES = tuple(POINTER_NAMES)
# Homes deployed before the champion's pointer was named for it keep serving from this name
# until their next champion deployment writes champion.json.
LEGACY_CHAMPION_NAME = "current.json"
HISTORY_NAME = "history.jsonl"
# Present while the agent is undeployed: no server answers for it, and its pointers, history
# and model files stay as they were, for a redeploy to serve again.
UNDEPLOYED_NAME = "undeployed.json"
# The agent's reward model (assets/rewards.py writes it, serving/rewards.py reads it): not a
# role, since it ranks a role's candidate answers rather than answering.
REWARD_NAME = "reward.json"
# The best-of-n an A/B test promoted for the agent (champion_promotion writes it): what its
# answers use when a request names no best_of.
BEST_OF_NAME = "best_of.json"


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


def pointer_path(deployments_dir: Path, role: str = "champion") -> Path:
    """The file of the role's pointer: champion.json, or current.json in an older home."""
    if role not in POINTER_NAMES:
        raise ValueError(f"role {role!r}: use one of {', '.join(ROLES)}")
    path = deployments_dir / POINTER_NAMES[role]
    legacy = deployments_dir / LEGACY_CHAMPION_NAME
    if role == "champion" and not path.exists() and legacy.exists():
        return legacy
    return path


def read_pointer(deployments_dir: Path, role: str = "champion") -> Deployment | None:
    path = pointer_path(deployments_dir, role)
    if not path.is_file():
        return None
    return Deployment(**json.loads(path.read_text()))


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
            # Back to the named version (one step when none is named): those above it go.
            stack.pop()
            target = event.get("to")
            while stack and target is not None and stack[-1].version != target:
                stack.pop()
    return stack


def deployed_versions(deployments_dir: Path) -> list[str]:
    return [e["deployment"]["version"] for e in history(deployments_dir) if e["action"] == "deploy"]


def write_pointer(deployments_dir: Path, deployment: Deployment, role: str) -> None:
    """Point the role at `deployment`: the history line first, then the atomic pointer swap."""
    path = pointer_path(deployments_dir, role)
    record_event(
        deployments_dir,
        {"action": "deploy", "role": role, "deployment": asdict(deployment)},
    )
    write_atomically(deployments_dir / POINTER_NAMES[role], _encoded(deployment))
    if path.name == LEGACY_CHAMPION_NAME:
        path.unlink(missing_ok=True)


def record_event(deployments_dir: Path, event: dict) -> None:
    deployments_dir.mkdir(parents=True, exist_ok=True)
    with open(deployments_dir / HISTORY_NAME, "a", encoding="utf-8") as handle:
        handle.write(json.dumps({"at": _now(), **event}) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def restore_champion(deployments_dir: Path, deployment: Deployment) -> None:
    """The champion's pointer back at an earlier deployment (the history says why)."""
    write_atomically(deployments_dir / CHAMPION_NAME, _encoded(deployment))
    (deployments_dir / LEGACY_CHAMPION_NAME).unlink(missing_ok=True)


@dataclass(frozen=True)
class Undeployment:
    at: str  # UTC, ISO 8601
    by: str
    reason: str


def undeployment(deployments_dir: Path) -> Undeployment | None:
    """Why and since when the agent is undeployed; None while it is deployed. A marker that
    cannot be read still undeploys (its presence is what counts), with that as its reason."""
    path = deployments_dir / UNDEPLOYED_NAME
    if not path.exists():
        return None
    try:
        return Undeployment(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError) as error:
        return Undeployment("unknown", "unknown", f"{UNDEPLOYED_NAME} unreadable: {error}")


def mark_undeployed(deployments_dir: Path, by: str, reason: str) -> Undeployment:
    marker = Undeployment(_now(), by, reason)
    write_atomically(deployments_dir / UNDEPLOYED_NAME, json.dumps(asdict(marker)).encode())
    return marker


def clear_undeployed(deployments_dir: Path) -> None:
    (deployments_dir / UNDEPLOYED_NAME).unlink(missing_ok=True)


def remove_pointer(deployments_dir: Path, role: str) -> None:
    pointer_path(deployments_dir, role).unlink(missing_ok=True)


def _encoded(deployment: Deployment) -> bytes:
    return json.dumps(asdict(deployment), indent=2).encode()


def _now() -> str:
    return datetime.now(UTC).isoformat()
