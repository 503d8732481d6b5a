"""The instruct base as one server holds it: loaded once, on first use, and shared by every
chat and instruction agent (an agent's own state is its index). A missing graph is built
and checked first (seconds); a base that cannot load is refused with why, and the server
keeps answering its other agents."""

import threading
from pathlib import Path

from thunder_dagster.serving.errors import BaseUnavailable


class SharedBase:
    def __init__(self, bases_dir: Path, threads: int | None = None):
        self.bases_dir = bases_dir
        self.threads = threads
        self._loaded = None
        self._adapted = None
        self._lock = threading.Lock()
        self.problem: str | None = None

    def get(self):
        """(BaseModel, InstructCard); BaseUnavailable with the reason when it cannot load."""
        if self._loaded is None:
            with self._lock:
                if self._loaded is None:
                    self._loaded = self._refusing(
                        "instruct base",
                        lambda builds: builds.load_base(self.bases_dir, self.threads),
                    )
        return self._loaded

    def adapted(self):
        """The graph that takes an agent's adapter as inputs: one for every adapted agent,
        loaded (built first when missing) on first use; BaseUnavailable with why not."""
        base = self.get()  # outside the lock, which get takes itself
        if self._adapted is None:
            with self._lock:
                if self._adapted is None:
                    self._adapted = self._refusing(
                        "adapted base",
                        lambda builds: builds.load_adapted(self.bases_dir, base, self.threads),
                    )
        return self._adapted

    def _refusing(self, what: str, load):
        """load(the builds module), or BaseUnavailable with why it failed (kept in problem)."""
        from thunder_dagster.instruct import builds
        from thunder_dagster.instruct.base import BaseUnavailableError
        from thunder_dagster.serving.sessions import RefusedModelError

        try:
            return load(builds)
        except (BaseUnavailableError, builds.BaseBuildError, RefusedModelError, OSError) as error:
            self.problem = str(error)
            raise BaseUnavailable(f"the {what} cannot answer: {error}") from None

    @property
    def loaded(self) -> bool:
        return self._loaded is not None
