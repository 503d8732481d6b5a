"""Query logging off the request path: answers are queued and written in batches.

A request gets its query id at once; the writer thread inserts the rows a moment later. Feedback
that names an id still in the queue flushes the queue before it looks the id up. The writer
also opens the store, in its own thread, so the server answers /healthz without waiting for
SQLAlchemy to import; whatever needs the store waits for `store()`.
"""

import logging
import queue
import threading
import time
from datetime import UTC, datetime

from thunder_dagster.feedback.records import QueryRecord, new_query_id

log = logging.getLogger(__name__)
BATCH = 256
# How long the writer lets answers gather before it inserts them: one transaction per batch
# instead of one per answer, off the request path either way.
GATHER_SECONDS = 0.2


class QueryLogWriter:
    def __init__(self, url: str):
        self.url = url
        self._store = None
        self._opened = threading.Event()
        self._error: Exception | None = None
        self.failure: str | None = None  # why the last write failed; None once one succeeds
        self.pending: queue.Queue[tuple[str, QueryRecord, datetime] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="query-log-writer", daemon=True)
        self.thread.start()

    def store(self, timeout: float = 60.0):
        """The open QueryStore, once the writer thread has opened it."""
        if not self._opened.wait(timeout):
            raise TimeoutError(f"the query-log store at {self.url} did not open in {timeout} s")
        if self._error is not None:
            raise RuntimeError(f"the query-log store cannot open: {self._error}")
        return self._store

    def available(self) -> bool:
        """Whether the store opened (without waiting for it to)."""
        return self._opened.is_set() and self._error is None

    def problem(self) -> str | None:
        """Why answers are not being logged now, for /healthz; None when they are."""
        if self._error is not None:
            return f"the query-log store cannot open ({type(self._error).__name__})"
        if self.failure is not None:
            return f"the last query-log write failed ({self.failure})"
        return None

    def submit(self, record: QueryRecord) -> str:
        query_id = new_query_id()
        self.pending.put((query_id, record, datetime.now(UTC)))
        return query_id

    def flush(self) -> None:
        """Return once every answer submitted so far is in the database."""
        self.pending.join()

    def close(self) -> None:
        self.pending.put(None)
        self.thread.join(timeout=10)
        if self._store is not None:
            self._store.close()

    def _run(self) -> None:
        from thunder_dagster.feedback.store import QueryStore

        try:
            self._store = QueryStore.open(self.url)
        except Exception as error:
            self._error = error
            log.exception("cannot open the query-log store at %s", self.url)
        finally:
            self._opened.set()
        while True:
            first = self.pending.get()
            batch = [first]
            deadline = time.monotonic() + GATHER_SECONDS
            while first is not None and len(batch) < BATCH:
                try:
                    batch.append(self.pending.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
                if batch[-1] is None:
                    break
            rows = [row for row in batch if row is not None]
            try:
                if rows and self._store is not None:
                    self._store.log_queries(rows)
                    self.failure = None
            except Exception as error:
                self.failure = type(error).__name__
                log.exception("could not write %d query log rows", len(rows))
            finally:
                for _ in batch:
                    self.pending.task_done()
            if any(row is None for row in batch):
                return
