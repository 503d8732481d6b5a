"""The server bounds a request's cost (issue 29, items 4 and 5): a body over the limit gets 413
unread, with or without a Content-Length; a stranger's unreadable body gets 401, not a 422;
a caller over its rate gets 429 and one past the waiting requests 503, each with
Retry-After; best_of x max_tokens stays within the work budget; the key refresh never holds
every request behind a slow store, and a PostgreSQL that accepts connections and never
answers fails a connect within its timeout instead of hanging."""

import asyncio
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from tests.factories import deploy_tiny
from tests.serving.test_route_guards import keyed
from thunder_dagster.access.keys import KeyStore
from thunder_dagster.serving.access import StoreSnapshot
from thunder_dagster.serving.api.admission import WorkQueue
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.errors import Busy
from thunder_dagster.serving.state import ServerSettings

GENERATE = "/v1/agents/acme/generate"


def open_server(home, **bounds) -> ServerSettings:
    return ServerSettings(
        deployments_root=home.root / "deployments",
        query_db_url=home.queries_db_url,
        reload_seconds=0.05,
        **bounds,
    )


def test_a_body_over_the_limit_is_refused_unread_with_or_without_its_length(home):
    deploy_tiny(home, "acme")
    with TestClient(create_app(open_server(home, max_body_bytes=2000))) as client:
        small = client.post(GENERATE, json={"prompt": "Hi", "user_id": "u", "max_tokens": 4})
        assert small.status_code == 200, small.text
        big = {"prompt": "x" * 3000, "user_id": "u"}
        refused = client.post(GENERATE, json=big)
        assert refused.status_code == 413 and "THUNDER_MAX_BODY_BYTES" in refused.text

        def chunks():  # no Content-Length: sent chunked
            yield b'{"prompt": "'
            for _ in range(10):
                yield b"y" * 300
            yield b'", "user_id": "u"}'

        streamed = client.post(
            GENERATE, content=chunks(), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413

        def small_chunks():
            yield b'{"prompt": "Hi", '
            yield b'"user_id": "u", "max_tokens": 4}'

        fine = client.post(
            GENERATE, content=small_chunks(), headers={"content-type": "application/json"}
        )
        assert fine.status_code == 200, fine.text


def test_a_stranger_with_an_unreadable_body_gets_401_and_a_keyholder_the_422(home, store):
    deploy_tiny(home, "acme")
    _, token = KeyStore(store.engine).create("app", ["generate", "feedback"])
    unreadable = {"content": b'{"prompt": ', "headers": {"content-type": "application/json"}}
    with TestClient(create_app(keyed(home))) as client:
        for path in (GENERATE, "/v1/feedback", "/v1/chat/completions"):
            stranger = client.post(path, **unreadable)
            assert stranger.status_code == 401 and "schema" not in stranger.text, path
            bad_key = client.post(
                path,
                content=unreadable["content"],
                headers={**unreadable["headers"], "Authorization": "Bearer thd_x_y"},
            )
            assert bad_key.status_code == 401, path
            held = client.post(
                path,
                content=unreadable["content"],
                headers={**unreadable["headers"], "Authorization": f"Bearer {token}"},
            )
            assert held.status_code == 422 and "JSON decode error" in held.text, path


def test_a_caller_over_its_rate_gets_429_with_retry_after_and_others_go_on(home, store):
    deploy_tiny(home, "acme")
    keys = KeyStore(store.engine)
    _, first = keys.create("first", ["generate"])
    _, second = keys.create("second", ["generate"])
    body = {"prompt": "Hi", "user_id": "u", "max_tokens": 2}
    settings = replace(keyed(home), rate_per_minute=3)
    with TestClient(create_app(settings)) as client:
        statuses = [
            client.post(GENERATE, json=body, headers={"Authorization": f"Bearer {first}"})
            for _ in range(4)
        ]
        assert [s.status_code for s in statuses] == [200, 200, 200, 429]
        assert int(statuses[-1].headers["retry-after"]) >= 1
        assert "THUNDER_RATE_LIMIT" in statuses[-1].text
        other = client.post(GENERATE, json=body, headers={"Authorization": f"Bearer {second}"})
        assert other.status_code == 200


def test_past_the_waiting_requests_the_server_answers_503_with_retry_after(home):
    deploy_tiny(home, "acme")
    with TestClient(create_app(open_server(home, workers=1, max_waiting=0))) as client:
        queue = client.app.state.serving.queue
        queue.admitted = queue.bound  # every thread busy, nobody may wait
        busy = client.post(GENERATE, json={"prompt": "Hi", "user_id": "u"})
        assert busy.status_code == 503 and busy.headers["retry-after"] == "2"
        assert "THUNDER_MAX_WAITING" in busy.text
        queue.admitted = 0
        assert client.post(GENERATE, json={"prompt": "Hi", "user_id": "u"}).status_code == 200


def test_the_work_queue_admits_its_threads_and_waiting_requests_and_no_more():
    release = threading.Event()

    async def scenario():
        queue = WorkQueue(ThreadPoolExecutor(1), threads=1, max_waiting=1)
        running = [asyncio.ensure_future(queue.run(release.wait)) for _ in range(2)]
        await asyncio.sleep(0.05)
        with pytest.raises(Busy, match="THUNDER_MAX_WAITING is 1"):
            await queue.run(time.sleep, 0)
        release.set()
        await asyncio.gather(*running)
        assert queue.admitted == 0
        await queue.run(time.sleep, 0)  # room again

    asyncio.run(scenario())


def test_best_of_times_max_tokens_stays_within_the_work_budget(home):
    deploy_tiny(home, "acme")
    with TestClient(create_app(open_server(home, max_work_tokens=100))) as client:
        asked = {"prompt": "Hi", "user_id": "u", "best_of": 2, "max_tokens": 64}
        refused = client.post(GENERATE, json=asked)
        assert refused.status_code == 422
        (detail,) = refused.json()["detail"]
        assert detail["loc"] == ["body", "best_of"] and "THUNDER_MAX_WORK_TOKENS" in detail["msg"]
        fits = client.post(GENERATE, json={**asked, "max_tokens": 50})
        assert fits.status_code == 200, fits.text


def test_a_slow_key_read_holds_no_request_and_a_failed_one_waits_out_the_refresh():
    reads, started, release = [], threading.Event(), threading.Event()

    class Store:
        engine = None

    def read(_engine):
        reads.append(time.monotonic())
        if len(reads) == 2:  # the second read hangs until released, then fails
            started.set()
            release.wait(10)
            raise OSError("the store stopped answering")
        return {"key": len(reads)}

    snapshot = StoreSnapshot(lambda: Store(), read, refresh_seconds=0.2)
    assert snapshot.value() == {"key": 1}  # the first read is waited for
    time.sleep(0.25)
    began = time.monotonic()
    assert snapshot.value() == {"key": 1}  # due: read again in the background
    assert started.wait(5)
    assert snapshot.value() == {"key": 1}  # while it hangs, the value last read
    assert time.monotonic() - began < 1.0
    release.set()
    time.sleep(0.05)
    assert snapshot.value() == {"key": 1} and len(reads) == 2  # no retry before the refresh
    time.sleep(0.25)
    snapshot.value()
    deadline = time.monotonic() + 5
    while snapshot.value() != {"key": 3} and time.monotonic() < deadline:
        time.sleep(0.01)
    assert snapshot.value() == {"key": 3}


def test_a_postgresql_that_never_answers_fails_the_connect_within_its_timeout(monkeypatch):
    from thunder_dagster.feedback.store import QueryStore

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)  # accepts the connection in the kernel, never says a word
    port = silent.getsockname()[1]
    monkeypatch.setenv("THUNDER_DB_TIMEOUT_SECONDS", "2")
    began = time.monotonic()
    with pytest.raises(Exception, match="timeout"):
        QueryStore.open(f"postgresql+psycopg2://thunder@127.0.0.1:{port}/thunder", 5)
    assert time.monotonic() - began < 10
    silent.close()
