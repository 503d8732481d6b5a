"""The answers' journal: an answer's log row is on disk before its response leaves.

`QueryLogWriter.submit` appends the row to this process's journal and returns once it is
fsynced; the writer thread then puts it in the store (or the spool) as before, and once every
row journaled so far is there, the journal is emptied. Group commit: a thread that finds its
row already synced by another's fsync returns at once, so concurrent answers share one fsync.

Each process holds an exclusive lock on its own journal while it lives. A journal nobody holds
belongs to a process that died (a kill -9, the OOM killer): the next writer to start moves its
rows into its spool, whose replay writes them (an id already in the store is left as it is).
A torn last line was never acknowledged (its fsync had not returned): it is skipped.
"""

import fcntl
import logging
import os
import socket
import threading
import uuid
from pathlib import Path

log = logging.getLogger(__name__)
PATTERN = "journal-*.jsonl"


class Journal:
    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        name = f"journal-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self.path = directory / name
        self._file = open(self.path, "a", encoding="utf-8")  # held while the process lives
        fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock = threading.Lock()  # the file's writes and the counts
        self._sync = threading.Lock()  # one fsync at a time
        self.written = 0  # rows appended
        self.synced = 0  # rows known to be on disk
        self.settled_rows = 0  # rows the writer has put in the store or the spool
        self.syncs = 0  # fsyncs made: fewer than rows when answers come together

    def append(self, line: str) -> None:
        """Write the row and return once it is on disk (OSError when it cannot be)."""
        with self._lock:
            self._file.write(line + "\n")
            self.written += 1
            ticket = self.written
        with self._sync:
            if self.synced >= ticket:
                return  # another answer's fsync took this row to disk
            with self._lock:
                self._file.flush()
                reached = self.written
            os.fsync(self._file.fileno())
            self.synced, self.syncs = reached, self.syncs + 1

    def settled(self, rows: int) -> None:
        """`rows` more journaled rows are in the store or the spool; once all are, the journal
        is emptied (a row journaled meanwhile keeps it until its own turn)."""
        with self._lock:
            self.settled_rows += rows
            if self.settled_rows >= self.written:
                self._file.flush()
                os.ftruncate(self._file.fileno(), 0)

    def close(self) -> None:
        """Release the journal: removed when empty, else left for the next process to adopt."""
        with self._lock:
            empty = self.settled_rows >= self.written
            self._file.close()
        if empty:
            self.path.unlink(missing_ok=True)


def adopt(directory: Path, own: Path, take) -> int:
    """Hand the rows of every journal whose process died to `take(lines)` (the spool), then
    remove it; journals of live processes are left alone. How many rows were taken."""
    taken = 0
    for path in sorted(directory.glob(PATTERN)):
        if path == own:
            continue
        try:
            handle = open(path, "a+", encoding="utf-8")
        except OSError:
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue  # its process lives
        try:
            handle.seek(0)
            text = handle.read()
            lines = text.splitlines()
            if lines and not text.endswith("\n"):
                lines = lines[:-1]  # torn: never acknowledged
            rows = [line for line in lines if line.strip()]
            if rows:
                take(rows)
                log.warning("recovered %d answers from %s, a server that died", len(rows), path)
            taken += len(rows)
            path.unlink(missing_ok=True)
        finally:
            handle.close()
    return taken
