"""Query logging off the request path: answers are queued and written in batches.

A request gets its query id at once; the writer thread inserts the rows a moment later. Feedback
that names an id still in the queue flushes the queue before it looks the id up. The writer
also opens the store, in its own thread, so the server answers /healthz without waiting for
SQLAlchemy to import.

No answer that was returned is lost: rows the store cannot take (it is down, slow to come up,
or never opened) go to the spool, an append-only file, and the writer replays them once the
store answers again. A rating of a spooled answer is spooled behind it.
"""

import dataclasses
import logging
import math
import queue
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from pathlib import Path

from thunder_dagster.feedback.records import QueryRecord, UnknownQueryError, new_query_id
from thunder_dagster.serving import journal
from thunder_dagster.serving.journal import Journal
from thunder_dagster.serving.spool import Rating, Spool, query_line, write_isolating

log = logging.getLogger(__name__)
BATCH = 256
# How long the writer lets answers gather before it inserts them: one transaction per batch
# instead of one per answer, off the request path either way.
GATHER_SECONDS = 0.2
# Answers waiting in memory beyond which /healthz reports that the writer is not keeping up.
BACKLOG = 4 * BATCH
# How often the writer tries a store that is down again, and replays the spool into it.
RETRY_SECONDS = 2.0
# Answers whose agent the writer remembers, so that a rating's key is checked against the
# agent it rates without the store (which may be down, or not hold the answer yet).
REMEMBERED = 100_000
# A statement of the server's that takes longer fails (PostgreSQL): a hung database holds no
# request and no writer batch longer than this.
STATEMENT_SECONDS = 10.0


def finite_record(record: QueryRecord) -> QueryRecord:
    """The record with every number finite: a confidence that is not (an external teacher's
    NaN) is logged as 0.0, a teacher's as None, a latency as 0.0. Neither the store (NOT NULL
    columns) nor the spool (JSON without NaN) could take it, and the writer must not stop."""
    changes = {}
    if not math.isfinite(record.confidence):
        changes["confidence"] = 0.0
    if record.teacher_confidence is not None and not math.isfinite(record.teacher_confidence):
        changes["teacher_confidence"] = None
    if not math.isfinite(record.latency_ms):
        changes["latency_ms"] = 0.0
    if changes:
        log.warning("logging an answer of %s with %s made finite", record.agent_id, sorted(changes))
    return dataclasses.replace(record, **changes) if changes else record


class QueryLogWriter:
    def __init__(self, url: str, spool_dir: Path, retry_seconds: float = RETRY_SECONDS):
        self.url = url
        self.retry_seconds = retry_seconds
        self.spool = Spool(spool_dir)
        # Every answer is on disk before its response leaves; a dead server's are recovered.
        self.journal = Journal(spool_dir)
        journal.adopt(spool_dir, self.journal.path, self.spool.add_lines)
        self._store = None
        self._opened = threading.Event()  # set once the first attempt to open has ended
        self._open_error: str | None = None
        self._next_try = 0.0
        self.failure: str | None = None  # why the last write failed; None once one succeeds
        self.lost = 0  # rows neither the store nor the spool could take
        self.journal_error: str | None = None  # why the last journal append failed
        self.pending: queue.Queue[tuple[str, QueryRecord, datetime] | None] = queue.Queue()
        self._agents: OrderedDict[str, str] = OrderedDict()  # query id -> agent, newest last
        self._agents_lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name="query-log-writer", daemon=True)
        self.thread.start()

    def store(self):
        """The open QueryStore, or None while it is not open (no waiting)."""
        return self._store

    def problem(self) -> str | None:
        """Why answers are not in the query log now, for /healthz; None when they are."""
        parts = []
        if not self.thread.is_alive():
            parts.append(
                "the query-log writer thread has stopped: answers are no longer logged; "
                "restart the server (its log says why the thread ended)"
            )
        if self.pending.qsize() > BACKLOG:
            parts.append(
                f"{self.pending.qsize()} answers wait for the query-log writer, which is not "
                "keeping up"
            )
        if self._opened.is_set() and self._store is None:
            parts.append(
                f"the query-log store cannot open ({self._open_error}): answers wait in the spool"
            )
        elif self.failure is not None:
            parts.append(
                f"the last query-log write failed ({self.failure}): answers wait in the spool"
            )
        if self.spool.depth:
            parts.append(
                f"{self.spool.queries} answers and {self.spool.ratings} ratings are spooled "
                "until the store takes them"
            )
        if self.spool.write_error is not None or self.lost:
            parts.append(
                f"the spool cannot be written ({self.spool.write_error}); "
                f"{self.lost} rows lost so far: free space for the spool folder"
            )
        if self.journal_error is not None:
            parts.append(
                f"the answers' journal cannot be written ({self.journal_error}): an answer is "
                "lost if the server dies before it is logged; free space for the spool folder"
            )
        if self.spool.dead_letters:
            parts.append(
                f"{self.spool.dead_letters} rows the store refused for what they hold were set "
                "aside in dead-letter.jsonl (each with the reason); the others were written"
            )
        if self.spool.rejected_lines:
            parts.append(
                f"{self.spool.rejected_lines} unreadable spool lines were set aside in "
                "rejected.jsonl"
            )
        return "; ".join(parts) or None

    def submit(self, record: QueryRecord) -> str:
        query_id = new_query_id()
        with self._agents_lock:
            self._agents[query_id] = record.agent_id
            if len(self._agents) > REMEMBERED:
                self._agents.popitem(last=False)
        row = (query_id, finite_record(record), datetime.now(UTC))
        try:
            self.journal.append(query_line(*row))  # durable before the caller answers
            self.journal_error = None
        except OSError as error:  # the answer still goes out; /healthz says it is at risk
            self.journal_error = f"{type(error).__name__}: {error.strerror or error}"
        self.pending.put(row)
        return query_id

    def agent_of(self, query_id: str) -> str | None:
        """The agent that gave the answer: remembered from this server's recent answers, else
        read from the store; None when the store is up and holds no such answer. LookupError
        when neither can tell (the store is down and the answer is not a recent one)."""
        with self._agents_lock:
            agent = self._agents.get(query_id)
        if agent is not None:
            return agent
        store = self._store
        if store is None:
            raise LookupError("the query-log store is unavailable")
        logged = store.query(query_id)
        return logged.agent_id if logged is not None else None

    def rate(
        self, query_id: str, score: int, comment: str | None, label: str | None = None
    ) -> bool:
        """Store a rating (with the label a classifier's answer should have had, if given):
        True once it is in the query log, False when it is spooled behind its answer (or, with
        the store down, to be checked against the log when it replays). UnknownQueryError when
        the store is up and no answer has the id."""
        rating = Rating(query_id, score, comment, datetime.now(UTC), label)
        self._opened.wait(10)  # a store still opening at start-up is worth a moment's wait
        store = self._store
        for attempt in range(2):
            if store is None or self.spool.holds(query_id):
                break
            try:
                store.add_feedback(query_id, score, comment, rating.at, label)
                return True
            except UnknownQueryError:
                if attempt:
                    raise
                self.flush()  # the answer may still be in the writer's queue
            except Exception as error:  # the database is down or refused the write
                self.failure = type(error).__name__
                log.warning("spooling a rating: the store refused it (%s)", self.failure)
                break
        # Its answer, if still queued, goes to the log or the spool first: a replay then never
        # meets a rating before its answer.
        self.flush()
        self.spool.add_rating(rating)  # OSError when the spool cannot be written either
        return False

    def flush(self) -> None:
        """Return once every answer submitted so far is in the database or the spool."""
        self.pending.join()

    def close(self) -> None:
        self.pending.put(None)
        self.thread.join(timeout=10)
        if self._store is not None:
            self._store.close()
        self.spool.close()
        self.journal.close()

    def _run(self) -> None:
        self._try_open()
        self._opened.set()
        while True:
            try:
                first = self.pending.get(timeout=self.retry_seconds)
            except queue.Empty:
                self._catch_up()
                continue
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
                self._write(rows)
            except Exception:  # whatever one batch holds, the writer goes on with the next
                self.lost += len(rows)
                log.exception("could not log or spool %d query log rows", len(rows))
            finally:
                self.journal.settled(len(rows))
                for _ in batch:
                    self.pending.task_done()
            if any(row is None for row in batch):
                return

    def _try_open(self) -> None:
        from thunder_dagster.feedback.store import QueryStore

        self._next_try = time.monotonic() + self.retry_seconds
        try:
            self._store = QueryStore.open(self.url, STATEMENT_SECONDS)
            self._open_error = None
        except Exception as error:
            self._open_error = type(error).__name__
            log.warning("cannot open the query-log store (%s); spooling answers", error)

    def _catch_up(self) -> bool:
        """Open the store if it is not, and replay the spool into it; whether the store took
        everything spooled (so new rows may go straight to it)."""
        if self._store is None and time.monotonic() >= self._next_try:
            self._try_open()
        if self._store is None:
            return False
        if not self.spool.pending_files():
            return True
        if time.monotonic() < self._next_try and self.failure is not None:
            return False
        self._next_try = time.monotonic() + self.retry_seconds
        try:
            replayed = self.spool.replay(self._store)
        except Exception as error:
            self.failure = type(error).__name__
            return False
        self.failure = None
        if replayed.queries or replayed.ratings:
            log.warning(
                "replayed %d spooled answers and %d ratings into the query log",
                replayed.queries,
                replayed.ratings,
            )
        return True

    def _write(self, rows: list[tuple[str, QueryRecord, datetime]]) -> None:
        caught_up = self._catch_up()
        if not rows:
            return
        if caught_up:
            try:
                write_isolating(self._store, rows, self.spool.set_aside)
                self.failure = None
                return
            except Exception as error:
                self.failure = type(error).__name__
                log.warning("spooling %d answers: the store refused them (%s)", len(rows), error)
        try:
            self.spool.add_queries(rows)
        except OSError:
            self.lost += len(rows)
            log.exception("could not spool %d query log rows", len(rows))
