"""What the server needs to search: the indexes it watches and the encoder its queries go
through, loaded on the first query (a server of agents without indexes never loads it)."""

import logging
import threading
from pathlib import Path

import numpy as np

from thunder_dagster.retrieval.encoder import EncoderFiles, EncoderUnavailableError
from thunder_dagster.retrieval.index import RetrievalIndex
from thunder_dagster.serving.indexes import IndexPool
from thunder_dagster.serving.watching import public_reason

log = logging.getLogger(__name__)


class Retrieval:
    def __init__(self, root: Path, files: EncoderFiles | None, cache_dir: Path, problem: str):
        self.root = root
        self.files = files
        self.cache_dir = cache_dir
        self.problem = problem  # why the server cannot search at all, or ""
        self.pool: IndexPool | None = None
        self._encoder = None
        self._loading = threading.Lock()

    @classmethod
    def start(
        cls,
        root: Path,
        cache_dir: Path,
        interval_seconds: float,
        on_load=lambda *_: None,
        only: frozenset[str] | None = None,
    ) -> "Retrieval":
        try:
            files = EncoderFiles.packaged()
            version = files.version()
        except EncoderUnavailableError as error:
            log.warning("retrieval is off: %s", error)
            return cls(root, None, cache_dir, f"retrieval is off: {public_reason(error)}")
        retrieval = cls(root, files, cache_dir, "")
        retrieval.pool = IndexPool(root, version, interval_seconds, on_load, only)
        retrieval.pool.start()
        return retrieval

    def agents(self) -> list[str]:
        return list(self.pool.agents) if self.pool is not None else []

    def index(self, agent_id: str) -> RetrievalIndex | None:
        return self.pool.get(agent_id) if self.pool is not None else None

    def why_not(self, agent_id: str) -> str:
        if self.problem:
            return self.problem
        entry = self.pool.agents.get(agent_id) if self.pool else None
        if entry is not None and entry.refused:
            return f"its index was refused: {entry.refused}"
        return "none is built yet; upload documents and let the ingest run finish"

    def encode(self, text: str) -> np.ndarray:
        return self.encode_many([text])[0]

    def encode_many(self, texts: list[str]) -> np.ndarray:
        if self.files is None:
            raise EncoderUnavailableError(self.problem)
        if self._encoder is None:
            with self._loading:
                if self._encoder is None:
                    from thunder_dagster.retrieval.encoder import SentenceEncoder

                    self._encoder = SentenceEncoder(self.files, self.cache_dir, threads=1)
        return self._encoder.encode(list(texts))

    def encoder_version(self) -> str | None:
        return self.files.version() if self.files is not None else None

    def problems(self) -> list[dict]:
        found = [{"reason": self.problem}] if self.problem else []
        if self.pool is not None:
            if not self.pool.watching:
                found.append({"reason": "the index watcher has stopped; restart the server"})
            for agent_id, entry in sorted(self.pool.agents.items()):
                if entry.refused:
                    found.append({"agent": agent_id, "reason": f"index refused: {entry.refused}"})
        return found

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.stop()
