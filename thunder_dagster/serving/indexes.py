"""The retrieval indexes a server searches, reloaded when an agent's current.json changes.

As with models: a watcher thread stats every agent's pointer; a changed one is loaded and
checked beside the index in service (its parts agree, it was built by this server's encoder,
and a chunk's own vector finds that chunk first), then swapped in with one assignment.
Requests in flight keep the index they started with. An index that does not load or fails its
check is refused with its reason and the old one keeps serving; nothing left under retrieval/
(a README, a half-written folder, a pointer to a pruned version) stops the watcher.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from thunder_dagster.retrieval.index import (
    POINTER,
    IndexUnavailableError,
    RetrievalIndex,
    pointed_version,
)
from thunder_dagster.serving.watching import FolderWatcher, public_reason

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AgentIndex:
    index: RetrievalIndex | None = None
    refused: str | None = None


def check_index(index: RetrievalIndex, encoder_version: str) -> None:
    """Raise IndexUnavailableError unless the index can answer this server's queries."""
    if index.manifest.encoder_version != encoder_version:
        raise IndexUnavailableError(
            f"index {index.version} was built with encoder {index.manifest.encoder_version}, "
            f"this server embeds queries with {encoder_version}; materialize retrieval_index "
            "with the server's encoder"
        )
    probe = index.vector_ranking(index.vectors[0], 1)
    if probe != [0]:
        raise IndexUnavailableError(
            f"index {index.version}: the first chunk's own vector finds rows {probe}, not itself"
        )


class IndexPool(FolderWatcher):
    name = "index-watcher"

    def __init__(
        self,
        root: Path,
        encoder_version: str,
        interval_seconds: float = 0.5,
        on_load: Callable[[str, str], None] = lambda agent, outcome: None,
        only: frozenset[str] | None = None,
    ):
        super().__init__(root, interval_seconds, only)
        self.encoder_version = encoder_version
        self.on_load = on_load  # (agent, "loaded" | "refused"): the metrics hear it
        self.agents: dict[str, AgentIndex] = {}
        self.seen: dict[str, tuple | None] = {}

    def get(self, agent_id: str) -> RetrievalIndex | None:
        entry = self.agents.get(agent_id)
        return entry.index if entry is not None else None

    def refresh(self) -> None:
        with self.lock:
            for agent_id in self.agent_folders():
                try:
                    self._refresh_one(agent_id)
                except Exception as error:  # one agent's trouble is that agent's
                    log.exception("agent %s: cannot look at its index pointer", agent_id)
                    current = self.agents.get(agent_id, AgentIndex())
                    self.agents[agent_id] = AgentIndex(current.index, public_reason(error))

    def _refresh_one(self, agent_id: str) -> None:
        pointer = self.root / agent_id / POINTER
        try:
            status = pointer.stat()
            signature = (status.st_mtime_ns, status.st_size, status.st_ino)
        except FileNotFoundError:
            signature = None
        if self.seen.get(agent_id, ()) == signature:
            return
        self.seen[agent_id] = signature
        current = self.agents.get(agent_id, AgentIndex())
        if signature is None:
            self.agents[agent_id] = AgentIndex()
            return
        try:
            version = pointed_version(pointer.parent)
            if version is None or "/" in version or version.startswith("."):
                raise IndexUnavailableError(f"{POINTER} names no index version")
            index = RetrievalIndex(pointer.parent / "indexes" / version)
            check_index(index, self.encoder_version)
        except Exception as error:
            log.warning("agent %s index refused: %s", agent_id, error)
            self.agents[agent_id] = AgentIndex(current.index, public_reason(error))
            self.on_load(agent_id, "refused")
            return
        self.agents[agent_id] = AgentIndex(index)
        self.on_load(agent_id, "loaded")
