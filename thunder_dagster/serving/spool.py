"""The query-log spool: answers and ratings the store could not take, kept until it can.

Each server process appends to a JSON-lines file of its own under the spool folder and holds an
exclusive lock on it while it lives, so a file nobody holds belongs to a process that died
with rows in it: the next replay adopts it. Replay inserts the answers (ignoring ids already
there, so a replay cut short and run again writes nothing twice), then the ratings, then
empties the file; a rating whose answer is not in the log yet waits for it a while. A line
that cannot be read (a torn last line, a file left there by hand) is set aside in
`rejected.jsonl` and counted; it never stops the others.
"""

import dataclasses
import fcntl
import json
import logging
import os
import socket
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from thunder_dagster.feedback.records import QueryRecord, UnknownQueryError
from thunder_dagster.times import utc_now

log = logging.getLogger(__name__)
PATTERN = "queries-*.jsonl"
REJECTED = "rejected.jsonl"
# Rows the store refused for what they hold (a character or a length its columns cannot take),
# each with the reason: the rows beside them are written, and these wait for an operator.
DEAD_LETTERS = "dead-letter.jsonl"
# How long a rating whose answer is not in the log yet waits for it: the answer may be in the
# spool of another server process whose store write failed too.
RATING_PATIENCE = timedelta(hours=1)


@dataclass(frozen=True)
class Rating:
    query_id: str
    score: int
    comment: str | None
    at: datetime
    label: str | None = None  # the label a classifier's answer should have had


@dataclass(frozen=True)
class Replayed:
    queries: int
    ratings: int  # written into the log
    waiting_ratings: int  # ratings of an id no answer has yet: kept for RATING_PATIENCE
    dropped_ratings: int  # ratings of an id no answer had within RATING_PATIENCE
    rejected_lines: int


def refusals() -> tuple[type[Exception], ...]:
    """The store's errors that say a row can never be written as it is (its data, or a
    constraint), as against the store being down."""
    from sqlalchemy.exc import DataError, IntegrityError

    # psycopg2 refuses a NUL character itself, with a ValueError, before PostgreSQL sees it.
    return (DataError, IntegrityError, ValueError)


def write_isolating(store, rows: list, set_aside, replaying: bool = False) -> int:
    """Write the answers in one insert; when the store refuses the batch for what a row holds,
    write them one by one and set the refused ones aside. Errors of a store that is down are
    raised, with nothing set aside. How many were set aside."""
    try:
        store.log_queries(rows, replaying=replaying)
        return 0
    except refusals():
        pass
    refused = 0
    for row in rows:
        try:
            store.log_queries([row], replaying=True)  # any row of the batch that went in stays
        except refusals() as error:
            set_aside(row, error)
            refused += 1
    return refused


def query_line(query_id: str, record: QueryRecord, at: datetime) -> str:
    row = {"kind": "query", "id": query_id, "at": at.isoformat(), **dataclasses.asdict(record)}
    return json.dumps(row, allow_nan=False)


def _rating_line(rating: Rating) -> str:
    return json.dumps(
        {
            "kind": "rating",
            "query_id": rating.query_id,
            "score": rating.score,
            "comment": rating.comment,
            "at": rating.at.isoformat(),
            "label": rating.label,
        }
    )


def _parse(line: str) -> tuple[str, QueryRecord, datetime] | Rating:
    row = json.loads(line)
    at = datetime.fromisoformat(row.pop("at"))
    if at.tzinfo is None:
        raise ValueError("a spooled time without its zone")
    kind = row.pop("kind")
    if kind == "query":
        query_id = row.pop("id")
        return str(query_id), QueryRecord(**row), at
    if kind == "rating":
        # Lines spooled before ratings carried a label have none.
        return Rating(row["query_id"], int(row["score"]), row["comment"], at, row.get("label"))
    raise ValueError(f"unknown kind {kind!r}")


class Spool:
    def __init__(self, directory: Path):
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        name = f"queries-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}.jsonl"
        self.path = directory / name
        self._file = open(self.path, "a", encoding="utf-8")  # held while the process lives
        fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock = threading.Lock()
        self._held: set[str] = set()  # ids of the answers in this process's file
        self.queries = 0
        self.ratings = 0
        self.rejected_lines = 0
        self.dead_letters = 0
        self.write_error: str | None = None  # why the last append failed

    @property
    def depth(self) -> int:
        """Rows in this process's file, waiting for the store."""
        return self.queries + self.ratings

    def holds(self, query_id: str) -> bool:
        with self._lock:
            return query_id in self._held

    def add_queries(self, rows: list[tuple[str, QueryRecord, datetime]]) -> None:
        self._append([query_line(*row) for row in rows], {query_id for query_id, _, _ in rows})

    def add_rating(self, rating: Rating) -> None:
        self._append([_rating_line(rating)], set())

    def add_lines(self, lines: list[str]) -> None:
        """Rows in the spool's own line format from elsewhere (a dead process's journal); one
        that cannot be read is set aside in rejected.jsonl."""
        kept, ids = [], set()
        for line in lines:
            try:
                row = _parse(line)
            except (ValueError, KeyError, TypeError) as error:
                self._reject(self.path, line, error)
                continue
            kept.append(line)
            if not isinstance(row, Rating):
                ids.add(row[0])
        self._append(kept, ids)

    def _append(self, lines: list[str], query_ids: set[str]) -> None:
        """Write and fsync, so a row the client was told about survives a crash."""
        with self._lock:
            try:
                self._file.write("".join(line + "\n" for line in lines))
                self._file.flush()
                os.fsync(self._file.fileno())
            except OSError as error:
                self.write_error = f"{type(error).__name__}: {error.strerror or error}"
                raise
            self.write_error = None
            self._held.update(query_ids)
            self.queries += len(query_ids)
            self.ratings += len(lines) - len(query_ids)

    def pending_files(self) -> bool:
        """Whether there is anything to replay: rows of this process, or a dead one's file."""
        return self.depth > 0 or bool(self._others())

    def _others(self) -> list[Path]:
        return [
            path
            for path in sorted(self.directory.glob(PATTERN))
            if path != self.path and path.is_file()
        ]

    def replay(self, store) -> Replayed:
        """Write every spooled row this process can take into `store`, then empty what was
        written. Raises the store's error, with nothing emptied, when the store is down."""
        with self._lock:
            held = [handle for handle in map(self._adopt, self._others()) if handle is not None]
            try:
                self._file.flush()
                queries, ratings, rejected = [], [], 0
                for path in [self.path, *(Path(handle.name) for handle in held)]:
                    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                        if not line.strip():
                            continue
                        try:
                            row = _parse(line)
                        except (ValueError, KeyError, TypeError) as error:
                            rejected += 1
                            self._reject(path, line, error)
                            continue
                        (ratings if isinstance(row, Rating) else queries).append(row)
                if queries:
                    write_isolating(store, queries, self.set_aside, replaying=True)
                waiting, dropped = [], 0
                for rating in ratings:
                    try:
                        store.add_feedback(
                            rating.query_id, rating.score, rating.comment, rating.at, rating.label
                        )
                    except refusals() as error:
                        self.set_aside(rating, error)
                        dropped += 1
                    except UnknownQueryError:
                        # Its answer may be in another server's spool, not replayed yet.
                        if utc_now() - rating.at < RATING_PATIENCE:
                            waiting.append(rating)
                        else:
                            dropped += 1
                            log.warning("dropped a rating of unknown query %s", rating.query_id)
                self._file.truncate(0)
                self._file.write("".join(_rating_line(rating) + "\n" for rating in waiting))
                self._file.flush()
                os.fsync(self._file.fileno())
                self._held.clear()
                self.queries, self.ratings = 0, len(waiting)
                for handle in held:
                    Path(handle.name).unlink(missing_ok=True)
                self.rejected_lines += rejected
                written = len(ratings) - len(waiting) - dropped
                return Replayed(len(queries), written, len(waiting), dropped, rejected)
            finally:
                for handle in held:
                    handle.close()

    def _adopt(self, path: Path):
        """The open, locked file of a process that is gone; None while its owner lives."""
        try:
            handle = open(path, "a+", encoding="utf-8")  # replay closes it
        except OSError:
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return None
        return handle

    def set_aside(
        self, row: "tuple[str, QueryRecord, datetime] | Rating", error: Exception
    ) -> None:
        """A row the store refused for what it holds, into dead-letter.jsonl with the reason
        (the store's first line of it), fsynced; counted for /healthz."""
        line = _rating_line(row) if isinstance(row, Rating) else query_line(*row)
        reason = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        log.warning("the query-log store refused a row; set aside in %s: %s", DEAD_LETTERS, reason)
        try:
            with open(self.directory / DEAD_LETTERS, "a", encoding="utf-8") as dead:
                dead.write(json.dumps({"reason": reason[:500], "row": json.loads(line)}) + "\n")
                dead.flush()
                os.fsync(dead.fileno())
            self.dead_letters += 1
        except OSError:
            log.exception("could not set the refused row aside")

    def _reject(self, path: Path, line: str, error: Exception) -> None:
        log.warning("set aside an unreadable line of the query-log spool %s: %s", path.name, error)
        try:
            with open(self.directory / REJECTED, "a", encoding="utf-8") as rejected:
                rejected.write(line + "\n")
        except OSError:
            log.exception("could not set the line aside")

    def close(self) -> None:
        """Release the file; rows left in it are replayed by the next process."""
        with self._lock:
            empty = self.depth == 0
            self._file.close()
            if empty:
                self.path.unlink(missing_ok=True)


def forget_in_spool(directory: Path, user_id: str) -> tuple[int, list[str]]:
    """Remove the user's answers from the spool folder's files that no live server holds
    (spools and journals of processes that died, the dead letters); (lines removed, the files
    of live servers left as they are: forget again once those servers have written them)."""
    removed, live = 0, []
    patterns = (PATTERN, "journal-*.jsonl", DEAD_LETTERS, REJECTED)
    for path in sorted({p for pattern in patterns for p in directory.glob(pattern)}):
        with open(path, "r+", encoding="utf-8", errors="replace") as handle:
            if path.name.startswith(("queries-", "journal-")):
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError:
                    live.append(path.name)
                    continue
            lines = handle.read().splitlines()
            kept = [line for line in lines if not _of_user(line, user_id)]
            if len(kept) < len(lines):
                handle.seek(0)
                handle.truncate()
                handle.write("".join(line + "\n" for line in kept))
                handle.flush()
                os.fsync(handle.fileno())
                removed += len(lines) - len(kept)
    return removed, live


def _of_user(line: str, user_id: str) -> bool:
    try:
        row = json.loads(line)
    except ValueError:
        return False
    row = row.get("row", row) if isinstance(row, dict) else {}
    user = str(row.get("user_id", "")) if isinstance(row, dict) else ""
    return user == user_id or user.endswith(f":{user_id}")
