"""The models a server holds, reloaded when their deployment pointers change.

A watcher thread stats every agent's pointer files; a changed pointer is loaded and checked
beside the model in service, then swapped in with one assignment. Requests in flight keep the
object they started with, so none fails during a reload; a file that does not load or fails
its checks is refused and the old model keeps serving, with the reason in /healthz. Nothing
left under deployments/ (a README, a lost+found folder, a pointer to a pruned version) stops
the watcher: what cannot be read is refused or skipped with a reason, and the look goes on.
"""

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from thunder_dagster.deployments.pointers import (
    ROLES,
    UNDEPLOYED_NAME,
    Undeployment,
    pointer_path,
    read_pointer,
    undeployment,
)
from thunder_dagster.serving.generation import LoadedModel
from thunder_dagster.serving.loading import load_deployment
from thunder_dagster.serving.watching import FolderWatcher, public_reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentModels:
    champion: LoadedModel | None = None
    challenger: LoadedModel | None = None
    teacher: LoadedModel | None = None
    refused: dict[str, str] = field(default_factory=dict)

    def versions(self) -> dict:
        described = {
            role: model.deployment.version if model is not None else None
            for role, model in (
                ("champion", self.champion),
                ("challenger", self.challenger),
                ("teacher", self.teacher),
            )
        }
        return {**described, "refused": dict(self.refused)}


def variant_for(agent_id: str, user_id: str, challenger_share: float) -> str:
    """Champion or challenger for a user, from a hash of (agent, user): the same user gets the
    same variant in every process and after every restart (Python's hash() is salted)."""
    digest = hashlib.sha256(f"{agent_id}\0{user_id}".encode()).digest()
    bucket = int.from_bytes(digest[:8], "big") / 2**64
    return "challenger" if bucket < challenger_share else "champion"


class ModelPool(FolderWatcher):
    name = "pointer-watcher"

    def __init__(
        self,
        deployments_root: Path,
        interval_seconds: float = 0.5,
        on_load: Callable[[str, str, str], None] = lambda agent, role, outcome: None,
        only: frozenset[str] | None = None,
    ):
        super().__init__(deployments_root, interval_seconds, only)
        self.on_load = on_load  # (agent, role, "loaded" | "refused"): the metrics hear it
        self.agents: dict[str, AgentModels] = {}
        self.seen: dict[tuple[str, str], tuple] = {}
        # Agents an operator undeployed: not served, and not a problem of this server's.
        self.undeployed: dict[str, Undeployment] = {}

    def get(self, agent_id: str) -> AgentModels | None:
        return self.agents.get(agent_id)

    def refresh(self) -> None:
        """Load every pointer that changed since the last look."""
        with self.lock:
            for agent_id in self.agent_folders():
                if self._undeployed(agent_id):
                    continue
                for role in ROLES:
                    try:
                        path = pointer_path(self.root / agent_id, role)
                        self._refresh_one(agent_id, role, path)
                    except Exception as error:
                        # One agent's trouble is that agent's: the others are still looked at.
                        log.exception("agent %s %s: cannot look at its pointer", agent_id, role)
                        self._refuse(agent_id, role, error)
            self.last_look = time.monotonic()

    def _undeployed(self, agent_id: str) -> bool:
        """Whether the agent is undeployed now; its models go when it is, and load again from
        its pointers when it is redeployed."""
        if not (self.root / agent_id / UNDEPLOYED_NAME).exists():
            if self.undeployed.pop(agent_id, None) is not None:
                self.seen = {key: seen for key, seen in self.seen.items() if key[0] != agent_id}
            return False
        if agent_id not in self.undeployed:
            self.undeployed = {**self.undeployed, agent_id: undeployment(self.root / agent_id)}
            self.agents = {name: m for name, m in self.agents.items() if name != agent_id}
            log.info("agent %s undeployed: its models are no longer served", agent_id)
        return True

    def _refuse(self, agent_id: str, role: str, error: Exception) -> None:
        current = self.agents.get(agent_id, AgentModels())
        self.agents[agent_id] = replace(
            current, refused={**current.refused, role: public_reason(error)}
        )

    def _refresh_one(self, agent_id: str, role: str, path: Path) -> None:
        try:
            status = path.stat()
            signature = (status.st_mtime_ns, status.st_size, status.st_ino)
        except FileNotFoundError:
            signature = None
        if self.seen.get((agent_id, role)) == signature:
            return
        self.seen[(agent_id, role)] = signature
        current = self.agents.get(agent_id, AgentModels())
        refused = {k: v for k, v in current.refused.items() if k != role}
        if signature is None:
            self.agents[agent_id] = replace(current, **{role: None}, refused=refused)
            return
        try:
            deployment = read_pointer(path.parent, role)
            if deployment is None:
                raise FileNotFoundError(f"{path.name}: the pointer went away while it was read")
            loaded = load_deployment(deployment)
        except Exception as error:
            # Whatever the candidate's trouble, the model in service keeps serving.
            log.warning("agent %s %s refused: %s", agent_id, role, error)
            refused[role] = public_reason(error)
            self.agents[agent_id] = replace(current, refused=refused)
            self.on_load(agent_id, role, "refused")
            return
        self.agents[agent_id] = replace(current, **{role: loaded}, refused=refused)
        self.on_load(agent_id, role, "loaded")
