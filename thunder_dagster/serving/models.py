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
import re
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from thunder_dagster.deployments.pointers import ROLES, pointer_path, read_pointer
from thunder_dagster.home import AGENT_ID_PATTERN
from thunder_dagster.serving.generation import LoadedModel, load_deployment

log = logging.getLogger(__name__)
# An absolute path in a reason; /healthz shows the file's name, not where the home lives.
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:'\"]+/)+(?=[^\s/:'\"]*)")


def public_reason(error: Exception) -> str:
    """The reason a candidate was refused, as /healthz shows it: without directory paths."""
    return ABSOLUTE_PATH.sub("", str(error))


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
        self.last_look: float | None = None  # time.monotonic() of the last whole look
        self.look_error: str | None = None  # why the last look failed, if it did

    def get(self, agent_id: str) -> AgentModels | None:
        return self.agents.get(agent_id)

    @property
    def watching(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def refresh(self) -> None:
        """Load every pointer that changed since the last look."""
        with self.lock:
            for agent_id in self._agent_folders():
                for role in ROLES:
                    try:
                        path = pointer_path(self.root / agent_id, role)
                        self._refresh_one(agent_id, role, path)
                    except Exception as error:
                        # One agent's trouble is that agent's: the others are still looked at.
                        log.exception("agent %s %s: cannot look at its pointer", agent_id, role)
                        self._refuse(agent_id, role, error)
            self.last_look = time.monotonic()

    def _agent_folders(self) -> list[str]:
        """The agents' folders; a stray file or a folder not named like an agent is passed by."""
        try:
            entries = sorted(self.root.iterdir()) if self.root.is_dir() else []
        except OSError as error:
            log.warning("cannot list %s: %s", self.root, error)
            return []
        return [
            entry.name
            for entry in entries
            if AGENT_ID_PATTERN.fullmatch(entry.name) and entry.is_dir()
        ]

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
            return
        self.agents[agent_id] = replace(current, **{role: loaded}, refused=refused)

    def start(self) -> None:
        self.refresh()
        self.thread = threading.Thread(target=self._watch, name="pointer-watcher", daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.refresh()
                self.look_error = None
            except Exception as error:  # the watcher outlives any one bad look
                log.exception("the pointer watcher's look failed")
                self.look_error = f"{type(error).__name__}: {public_reason(error)}"

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
