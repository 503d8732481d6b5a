"""The real server process: `thunder serve` on a free port, driven by `thunder simulate`."""

import json
import os
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.factories import REPO_ROOT, deploy_tiny, free_port, log
from thunder_dagster.feedback.store import QueryStore
from thunder_dagster.serving.models import variant_for
from thunder_dagster.serving.simulation import simulate

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def start_server(tmp_path: Path, *options: str, ready=lambda health: True):
    """`thunder serve` on a free port; (process, url) once /healthz satisfies `ready`."""
    port = free_port()
    log = tmp_path / f"server-{port}.log"
    command = [str(Path(sys.executable).parent / "thunder"), "serve", "--port", str(port)]
    with open(log, "w") as out:
        process = subprocess.Popen(
            [*command, *options],
            cwd=REPO_ROOT,
            env=dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=1) as response:
                if ready(json.loads(response.read())):
                    return process, url
        except OSError:
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"the server did not come up; its log:\n{log.read_text()[-3000:]}")


@pytest.fixture
def server(home, tmp_path):
    deploy_tiny(home, "acme", seed=0)
    deploy_tiny(home, "acme", seed=1, role="challenger")
    process, url = start_server(
        tmp_path,
        "--challenger-share",
        "0.5",
        ready=lambda health: health["agents"].get("acme", {}).get("challenger"),
    )
    yield url
    process.terminate()
    process.wait(timeout=20)


def test_answers_acknowledged_before_a_kill_9_are_in_the_query_log_after_a_restart(home, tmp_path):
    """Issue 29 item 2: the store holds the writer back (SQLite's write lock, taken by this
    test), so the answers wait in the server's memory when it is killed; each acknowledged one
    was journaled first, and the next writer to start puts it in the log."""
    import signal
    import sqlite3

    from thunder_dagster.serving.querylog import QueryLogWriter

    deploy_tiny(home, "acme")
    QueryStore.open(home.queries_db_url).close()  # the schema, before the lock
    process, url = start_server(tmp_path, ready=lambda health: "acme" in health["agents"])
    lock = sqlite3.connect(home.queries_db, timeout=1)
    lock.execute("BEGIN IMMEDIATE")  # the writer's inserts now wait (its busy timeout: 10 s)
    try:
        ids = []
        for n in range(8):
            body = json.dumps({"prompt": f"Hi {n}", "user_id": "u", "max_tokens": 2}).encode()
            request = urllib.request.Request(
                f"{url}/v1/agents/acme/generate",
                data=body,
                headers={"content-type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=30) as response:
                ids.append(json.loads(response.read())["query_id"])
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=20)
    finally:
        lock.rollback()
        lock.close()
    with QueryStore.open(home.queries_db_url) as store:
        assert [store.query(query_id) for query_id in ids] == [None] * len(ids)  # none was in
    writer = QueryLogWriter(home.queries_db_url, home.root / "spool", retry_seconds=0.2)
    try:
        deadline = time.monotonic() + 30
        with QueryStore.open(home.queries_db_url) as store:
            while time.monotonic() < deadline:
                found = [store.query(query_id) for query_id in ids]
                if all(found):
                    break
                time.sleep(0.2)
        assert all(found), f"{sum(map(bool, found))} of {len(ids)} answers recovered"
        assert [row.prompt for row in found] == [f"Hi {n}" for n in range(8)]
    finally:
        writer.close()


def test_simulated_users_get_answers_split_by_a_hash_stable_across_processes(home, server):
    progress = []
    summary = simulate(home, "acme", server, 40, 12, 1.0, 4, seed=0, echo=progress.append)
    assert summary["queries"] == 40 and summary["failed"] == 0
    assert summary["feedback_given"] == 40 and progress[-1] == "40/40 queries"
    store = QueryStore.open(home.queries_db_url)
    try:
        now = datetime.now(UTC)
        rows = store.outcomes("acme", now - timedelta(hours=1))
        assert sum(len(outcome.scores) for outcome in rows) == 40
        with store.engine.connect() as connection:
            users = connection.exec_driver_sql(
                "SELECT DISTINCT user_id, variant FROM query_logs"
            ).all()
    finally:
        store.close()
    # The server process split the users exactly as this process computes it.
    assert users and all(variant == variant_for("acme", user, 0.5) for user, variant in users)
    assert {variant for _, variant in users} == {"champion", "challenger"}


@pytest.mark.clock
def test_thunder_analyze_prints_the_decision_of_the_day_as_json(home):
    store = QueryStore.open(home.queries_db_url)
    log(store, 120, datetime(2026, 3, 3, 9), fallback=True, confidence=0.3)
    store.close()
    thunder = str(Path(sys.executable).parent / "thunder")
    done = subprocess.run(
        [thunder, "analyze", "acme", "--day", "2026-03-03"],
        cwd=REPO_ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    decision = json.loads(done.stdout[done.stdout.index("{\n") :])
    assert decision["rule"] == "distillation"
    assert decision["learning_rate"] == pytest.approx(2e-4)
    assert decision["inputs"]["teacher_fallbacks"] == 120
    assert decision["window_utc"] == ["2026-03-03T00:00:00+00:00", "2026-03-04T00:00:00+00:00"]


def test_the_openai_client_streams_a_chat_agents_answer_from_thunder_serve(
    home, tmp_path, instruct_base
):
    """The official client against the real process: a chat agent (nothing trained, its
    index only) answers from its documents, streamed as server-sent events."""
    import openai

    from tests.factories import index_agent
    from thunder_dagster.tasks.agents import write_task

    home.create_agent("desk")
    write_task(home.agent_dir("desk"), "chat")
    notes = "The walk-in cooler must stay between one and four degrees. " * 3
    index_agent(home, "desk", {"safety.txt": notes})
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "thunder"), "serve", "--port", str(port)],
            cwd=REPO_ROOT,
            env=dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="open")
        deadline = time.monotonic() + 60
        while True:
            try:
                assert [model.id for model in client.models.list()] == ["desk"]
                break
            except (openai.APIConnectionError, AssertionError):
                if time.monotonic() > deadline:
                    raise AssertionError(log.read_text()[-3000:]) from None
                time.sleep(0.5)
        question = "Between which temperatures must the walk-in cooler stay?"
        stream = client.chat.completions.create(
            model="desk",
            messages=[{"role": "user", "content": question}],
            max_tokens=32,
            stream=True,
        )
        chunks = list(stream)
    finally:
        process.terminate()
        process.wait(timeout=20)
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
    assert "one and four" in text.lower()
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["sources"][0]["filename"] == "safety.txt"
