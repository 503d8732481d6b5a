"""What the model pool and the index pool share: a daemon thread that looks at every agent's
folder under a root at an interval and survives any one bad look."""

import logging
import re
import threading
from pathlib import Path

from thunder_dagster.home import AGENT_ID_PATTERN

log = logging.getLogger(__name__)

# An absolute path in a reason; /healthz shows the file's name, not where the home lives.
ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s/:'\"]+/)+(?=[^\s/:'\"]*)")


def public_reason(error: Exception) -> str:
    """The reason a candidate was refused, as /healthz shows it: without directory paths."""
    return ABSOLUTE_PATH.sub("", str(error))


class FolderWatcher:
    """Subclasses say what one look does (`refresh`); this runs it now and then every
    `interval` seconds on a thread named `name`."""

    name = "watcher"

    def __init__(self, root: Path, interval_seconds: float, only: frozenset[str] | None = None):
        self.root = root
        self.interval = interval_seconds
        self.only = only  # the agents to look at; None: every agent's folder
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None
        self.last_look: float | None = None  # time.monotonic() of the last whole look
        self.look_error: str | None = None  # why the last look failed, if it did

    def refresh(self) -> None:
        raise NotImplementedError

    def agent_folders(self) -> list[str]:
        """The agents' folders; a stray file or a folder not named like an agent is passed by."""
        try:
            entries = sorted(self.root.iterdir()) if self.root.is_dir() else []
        except OSError as error:
            log.warning("cannot list %s: %s", self.root, error)
            return []
        return [
            e.name
            for e in entries
            if AGENT_ID_PATTERN.fullmatch(e.name)
            and (self.only is None or e.name in self.only)
            and e.is_dir()
        ]

    @property
    def watching(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def start(self) -> None:
        self.refresh()
        self.thread = threading.Thread(target=self._watch, name=self.name, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                self.refresh()
                self.look_error = None
            except Exception as error:  # the watcher outlives any one bad look
                log.exception("the %s's look failed", self.name)
                self.look_error = f"{type(error).__name__}: {public_reason(error)}"

    def stop(self) -> None:
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(timeout=5)
