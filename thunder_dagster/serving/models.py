"""The models a server holds, reloaded when their deployment pointers change.

A watcher thread stats every agent's pointer files; a changed pointer is loaded and checked
beside the model in service, then swapped in with one assignment. Requests in flight keep the
object they started with, so none fails during a reload; a file that does not load or fails
its checks is refused and the old model keeps serving, with the reason in /healthz.
"""

import hashlib
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path

from thunder_dagster.deployments.pointers import ROLES, pointer_path, read_pointer
from thunder_dagster.home import AGENT_ID_PATTERN
from thunder_dagster.serving.generation import LoadedModel, RefusedModelError, load_deployment


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


class ModelPool:
    def __init__(self, deployments_root: Path, interval_seconds: float = 0.5):
        self.root = deployments_root
        self.interval = interval_seconds
        self.agents: dict[str, AgentModels] = {}
        self.seen: dict[tuple[str, str], tuple] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def get(self, agent_id: str) -> AgentModels | None:
        return self.agents.get(agent_id)

    def refresh(self) -> None:
        """Load every pointer that changed since the last look."""
        with self.lock:
            names = (
                sorted(p.name for p in self.root.iterdir() if AGENT_ID_PATTERN.fullmatch(p.name))
                if self.root.is_dir()
                else []
            )
            for agent_id in names:
                for role in ROLES:
                    self._refresh_one(agent_id, role, pointer_path(self.root / agent_id, role))

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
            loaded = load_deployment(deployment)
        except (RefusedModelError, ValueError, TypeError, OSError) as error:
            refused[role] = str(error)
            self.agents[agent_id] = replace(current, refused=refused)
            return
        self.agents[agent_id] = replace(current, **{role: loaded}, refused=refused)

    def start(self) -> None:
        self.refresh()
        self.thread = threading.Thread(target=self._watch, name="pointer-watcher", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopping.wait(self.interval):
            self.refresh()

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
