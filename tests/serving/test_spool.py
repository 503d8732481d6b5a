import fcntl
import os
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from tests.factories import deploy_tiny
from tests.services import SERVICES, postgres_database
from thunder_dagster.feedback.records import QueryRecord
from thunder_dagster.feedback.store import QueryStore
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.spool import REJECTED, Rating, Spool
from thunder_dagster.serving.state import ServerSettings

pytestmark = SERVICES

AT = datetime(2026, 11, 30, 12, tzinfo=UTC)


def record(n: int) -> QueryRecord:
    return QueryRecord("acme", f"u{n}", "champion", "1.0.0", f"p{n}", f"r{n}", 0.5, False, 3.0)


@pytest.mark.clock
def test_replay_writes_spooled_answers_and_their_ratings_once(store, tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.add_queries([(f"q{n}", record(n), AT + timedelta(seconds=n)) for n in range(3)])
    spool.add_rating(Rating("q1", 5, "good", AT + timedelta(minutes=1)))
    spool.add_rating(Rating("nobody", 2, None, AT))
    spool.add_rating(Rating("elsewhere", 3, None, datetime.now(UTC)))
    assert (spool.queries, spool.ratings, spool.holds("q1"), spool.holds("q9")) == (
        3,
        3,
        True,
        False,
    )
    replayed = spool.replay(store)
    # A rating whose answer is not in the log yet waits for it (another server may hold it);
    # one that waited longer than the patience is dropped.
    assert (replayed.queries, replayed.ratings, replayed.waiting_ratings) == (3, 1, 1)
    assert replayed.dropped_ratings == 1
    assert (spool.queries, spool.ratings) == (0, 1) and not spool.holds("q1")
    assert "elsewhere" in spool.path.read_text() and "q1" not in spool.path.read_text()
    row = store.query("q2")
    assert (row.prompt, row.response, row.created_at) == ("p2", "r2", AT + timedelta(seconds=2))
    assert store.stats("acme", AT, AT + timedelta(hours=1)).positive_feedback == 1
    # A replay cut short after the store took the rows, run again: nothing is written twice.
    spool.add_queries([("q0", record(0), AT)])
    assert spool.replay(store).queries == 1
    assert store.stats("acme", AT, AT + timedelta(hours=1)).total_queries == 3
    spool.close()
    assert spool.path.exists()  # the waiting rating stays for the next process


def test_a_dead_processs_file_is_adopted_a_live_ones_is_not(store, tmp_path):
    folder = tmp_path / "spool"
    dead = Spool(folder)
    dead.add_queries([("dead1", record(1), AT)])
    dead.close()  # the process is gone; its rows stay on disk
    assert dead.path.exists()
    live = Spool(folder)
    live.add_queries([("live1", record(2), AT)])
    mine = Spool(folder)
    replayed = mine.replay(store)
    assert replayed.queries == 1 and store.query("dead1") is not None
    assert store.query("live1") is None and not dead.path.exists() and live.path.exists()
    live.close()
    mine.close()


def test_unreadable_lines_are_set_aside_and_the_rest_replayed(store, tmp_path):
    folder = tmp_path / "spool"
    folder.mkdir()
    left = folder / "queries-by-hand.jsonl"
    spool = Spool(folder)
    spool.add_queries([("good", record(1), AT)])
    left.write_text('{"kind": "query", "id": "torn", "at": "2026-\n{"kind": "rating"}\n')
    (folder / "README").write_text("what this folder is for")
    (folder / "queries-folder.jsonl").mkdir()
    replayed = spool.replay(store)
    assert (replayed.queries, replayed.rejected_lines) == (1, 2)
    assert store.query("good") is not None and store.query("torn") is None
    assert len((folder / REJECTED).read_text().splitlines()) == 2
    assert not left.exists() and (folder / "README").exists()
    spool.close()


def test_an_exclusive_lock_marks_the_file_of_a_live_process(tmp_path):
    spool = Spool(tmp_path / "spool")
    with open(spool.path) as other, pytest.raises(BlockingIOError):
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
    spool.close()


def wait_until(predicate, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    pytest.fail(f"{what} within {seconds:g} s")


def postgres_ready() -> bool:
    return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode == 0


def postgres(action: str) -> None:
    if action == "start" and postgres_ready():
        return
    version = os.listdir("/etc/postgresql")[0]
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", action],
        check=True,
        timeout=120,
    )
    if action == "start":
        for _ in range(60):
            if postgres_ready():
                return
            time.sleep(0.5)


@pytest.mark.integration
def test_postgresql_stopped_while_the_server_answers_loses_no_answer_and_no_rating(home):
    """Answers and ratings given before, during and after an outage of the store's PostgreSQL
    are all in the query log once it is back."""
    deploy_tiny(home, "acme")
    with postgres_database() as url:
        settings = ServerSettings(
            deployments_root=home.root / "deployments",
            query_db_url=url,
            reload_seconds=0.05,
            store_retry_seconds=0.2,
        )
        given: dict[str, int] = {}
        started = datetime.now(UTC)

        def ask_and_rate(client, n: int) -> None:
            body = {"prompt": f"the {n} ", "max_tokens": 4, "temperature": 0.8, "user_id": f"u{n}"}
            answer = client.post("/v1/agents/acme/generate", json=body)
            assert answer.status_code == 200, answer.text
            query_id = answer.json()["query_id"]
            rated = client.post("/v1/feedback", json={"query_id": query_id, "score": 1 + n % 5})
            assert rated.status_code == 200, rated.text
            given[query_id] = 1 + n % 5

        try:
            with TestClient(create_app(settings)) as client:
                for n in range(5):
                    ask_and_rate(client, n)
                postgres("stop")
                for n in range(5, 25):
                    ask_and_rate(client, n)
                health = client.get("/healthz").json()
                assert health["status"] == "degraded" and "spooled" in str(health["problems"])
                postgres("start")
                wait_until(
                    lambda: client.get("/healthz").json()["status"] == "ok",
                    60,
                    "the spool was not replayed",
                )
                for n in range(25, 30):
                    ask_and_rate(client, n)
        finally:
            postgres("start")
        with QueryStore.open(url) as store:
            lost = [query_id for query_id in given if store.query(query_id) is None]
            assert lost == []
            stats = store.stats("acme", started, datetime.now(UTC))
            assert stats.total_queries == 30
            assert stats.user_feedback_available == 30
            assert stats.positive_feedback == sum(1 for s in given.values() if s >= 4)


def test_a_row_postgresql_refuses_is_set_aside_with_its_reason_and_the_rest_are_written(tmp_path):
    """Issue 29 item 1: a NUL character or an over-long user id in one answer (the API refuses
    both; a row that gets past it anyway) never holds up the rows beside it, live or replayed."""
    import json

    from thunder_dagster.serving.querylog import QueryLogWriter
    from thunder_dagster.serving.spool import DEAD_LETTERS

    nul = QueryRecord("acme", "u", "champion", "1.0.0", "p\x00q", "r", 0.5, False, 3.0)
    long_user = QueryRecord("acme", "u" * 200, "champion", "1.0.0", "p", "r", 0.5, False, 3.0)
    with postgres_database() as url:
        # Spooled while the store was down: replayed with the bad row among them.
        spool = Spool(tmp_path / "spool")
        spool.add_queries([("s0", record(0), AT), ("s1", nul, AT), ("s2", record(2), AT)])
        spool.add_rating(Rating("s0", 5, "fine\x00", AT))
        spool.close()
        writer = QueryLogWriter(url, tmp_path / "spool", retry_seconds=0.2)
        try:
            ids = [writer.submit(r) for r in (record(3), long_user, record(4), nul)]
            writer.flush()
            deadline = time.monotonic() + 30
            while writer.spool.depth and time.monotonic() < deadline:
                time.sleep(0.2)
            with QueryStore.open(url) as store:
                found = {q: store.query(q) is not None for q in ["s0", "s1", "s2", *ids]}
            assert found == {
                "s0": True,
                "s1": False,
                "s2": True,
                ids[0]: True,
                ids[1]: False,
                ids[2]: True,
                ids[3]: False,
            }
            set_aside = [
                json.loads(line)
                for line in (tmp_path / "spool" / DEAD_LETTERS).read_text().splitlines()
            ]
            reasons = {
                entry["row"].get("id") or entry["row"]["kind"]: entry["reason"]
                for entry in set_aside
            }
            assert set(reasons) == {"s1", "rating", ids[1], ids[3]}
            assert "NUL" in reasons["s1"] and "character varying(128)" in reasons[ids[1]]
            assert "dead-letter.jsonl" in writer.problem()
            # The writer goes on: a later answer is written.
            later = writer.submit(record(5))
            writer.flush()
            with QueryStore.open(url) as store:
                assert store.query(later) is not None
        finally:
            writer.close()
