"""Query logging off the request path: answers are queued and written in batches.

A request gets its query id at once; the writer thread inserts the rows a moment later. Feedback
that names an id still in the queue flushes the queue before it looks the id up.
"""

import logging
import queue
import threading
import time
from datetime import datetime

from thunder_dagster.feedback.schema import utc_now
from thunder_dagster.feedback.store import QueryRecord, QueryStore, new_query_id

log = logging.getLogger(__name__)
BATCH = 256
# How long the writer lets answers gather before it inserts them: one transaction per batch
# instead of one per answer, off the request path either way.
GATHER_SECONDS = 0.2


class QueryLogWriter:
    def __init__(self, store: QueryStore):
        self.store = store
        self.pending: queue.Queue[tuple[str, QueryRecord, datetime] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="query-log-writer", daemon=True)
        self.thread.start()

    def submit(self, record: QueryRecord) -> str:
        query_id = new_query_id()
        self.pending.put((query_id, record, utc_now()))
        return query_id

    def flush(self) -> None:
        """Return once every answer submitted so far is in the database."""
        self.pending.join()

    def close(self) -> None:
        self.pending.put(None)
        self.thread.join(timeout=10)

    def _run(self) -> None:
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
                if rows:
                    self.store.log_queries(rows)
            except Exception:
                log.exception("could not write %d query log rows", len(rows))
            finally:
                for _ in batch:
                    self.pending.task_done()
            if any(row is None for row in batch):
                return
