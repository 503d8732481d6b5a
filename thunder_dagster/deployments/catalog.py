"""An agent's model versions as an operator lists them: each released version's card, the
roles that point at it now, and when it was last deployed (from the deployment history)."""

from dataclasses import dataclass
from pathlib import Path

from thunder_dagster.deployments.pointers import ROLES, history, read_pointer
from thunder_dagster.deployments.versions import PATTERN, Version
from thunder_dagster.modeling.cards import ModelCard, UnreadableCardError


@dataclass(frozen=True)
class VersionEntry:
    version: str
    family: str | None
    params: dict
    test_loss: float | None
    parent_version: str | None
    change: str | None
    created_at: str | None
    roles: tuple[str, ...]  # the roles that point at it now
    deployed_at: str | None  # its latest deployment, in any role
    problem: str | None = None  # why its card could not be read
    # A classifier's measures on its test split (None for a generator).
    accuracy: float | None = None
    macro_f1: float | None = None


def agent_versions(models_dir: Path, deployments_dir: Path) -> list[VersionEntry]:
    """Every released version of the agent, newest first; a folder whose card cannot be read
    is listed with the reason, never a reason to fail the listing."""
    roles: dict[str, list[str]] = {}
    for role in ROLES:
        try:
            pointer = read_pointer(deployments_dir, role)
        except (OSError, ValueError, TypeError):
            pointer = None
        if pointer is not None:
            roles.setdefault(pointer.version, []).append(role)
    deployed: dict[str, str] = {}
    try:
        events = history(deployments_dir)
    except (OSError, ValueError):
        events = []
    for event in events:
        if event.get("action") == "deploy":
            deployment = event.get("deployment") or {}
            deployed[str(deployment.get("version"))] = str(event.get("at"))
    folders = (
        [p for p in models_dir.iterdir() if p.is_dir() and PATTERN.match(p.name)]
        if models_dir.is_dir()
        else []
    )
    entries = []
    for folder in sorted(folders, key=lambda p: Version.parse(p.name), reverse=True):
        version = folder.name
        common = {
            "version": version,
            "roles": tuple(roles.get(version, ())),
            "deployed_at": deployed.get(version),
        }
        try:
            card = ModelCard.read(folder)
        except UnreadableCardError as error:
            entries.append(
                VersionEntry(
                    family=None,
                    params={},
                    test_loss=None,
                    parent_version=None,
                    change=None,
                    created_at=None,
                    problem=str(error).replace(str(folder.parent), "models"),
                    **common,
                )
            )
            continue
        split, loss = card.reported_loss()
        entries.append(
            VersionEntry(
                family=card.family,
                params=card.params,
                test_loss=loss if split == "test" else None,
                parent_version=card.parent_version,
                change=card.change,
                created_at=card.created_at or None,
                accuracy=card.classification.accuracy if card.classification else None,
                macro_f1=card.classification.macro_f1 if card.classification else None,
                **common,
            )
        )
    return entries
