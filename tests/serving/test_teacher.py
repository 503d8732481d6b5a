"""API B, the external teacher, against an OpenAI-compatible chat-completions server this test
starts on loopback (no real endpoint is reachable here; the server speaks the same protocol
to the official `openai` client): success, slow answers past the budget, 429 and 500 with
retries, the breaker opening and closing, and the model server's use of it."""

import time

import pytest
from fastapi.testclient import TestClient

from tests.factories import deploy_tiny
from thunder_dagster.feedback.store import QueryStore
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.state import ServerSettings
from thunder_dagster.serving.teacher import (
    CircuitBreaker,
    ExternalTeacher,
    TeacherSettings,
    TeacherUnavailableError,
)


def teacher(endpoint, **overrides) -> ExternalTeacher:
    defaults = {"budget_seconds": 1.0, "failures_to_open": 3, "open_seconds": 0.5}
    settings = TeacherSettings(endpoint.base_url, "big-model", "sk-test", **(defaults | overrides))
    return ExternalTeacher(settings)


def test_an_answer_carries_its_text_confidence_and_source(endpoint):
    answer = teacher(endpoint).answer("Once upon", 16, 0.7)
    assert answer.text == "the teacher says hello" and answer.attempts == 1
    assert answer.confidence == pytest.approx(0.9003, abs=1e-3)  # exp(-0.105)
    assert answer.model_version == "api-b:big-model"
    (seen,) = endpoint.seen
    assert seen["auth"] == "Bearer sk-test"
    assert seen["body"]["model"] == "big-model" and seen["body"]["max_tokens"] == 16
    assert seen["body"]["messages"][-1] == {"role": "user", "content": "Once upon"}


def test_429_and_500_are_retried_with_backoff_within_the_budget(endpoint):
    endpoint.script = ["429", "500", "ok"]
    started = time.monotonic()
    answer = teacher(endpoint, budget_seconds=5.0).answer("x", 8, 0.0)
    assert answer.attempts == 3 and endpoint.calls == 3
    assert time.monotonic() - started >= 0.2 + 0.4  # the two pauses: 0.2 s, then 0.4 s


def test_a_slow_endpoint_is_cut_at_the_budget(endpoint):
    endpoint.script = ["slow", "slow", "slow"]
    started = time.monotonic()
    with pytest.raises(TeacherUnavailableError, match="no answer within 1 s"):
        teacher(endpoint, budget_seconds=1.0).answer("x", 8, 0.0)
    assert time.monotonic() - started < 1.0 + 0.5


def test_the_breaker_opens_after_failures_in_a_row_and_a_trial_call_closes_it(endpoint):
    external = teacher(endpoint, budget_seconds=0.3, failures_to_open=2, open_seconds=0.6)
    endpoint.script = ["500"] * 50
    for _ in range(2):
        with pytest.raises(TeacherUnavailableError, match="no answer within"):
            external.answer("x", 8, 0.0)
    assert external.breaker.state() == "open"
    calls = endpoint.calls
    with pytest.raises(TeacherUnavailableError, match="circuit is open"):
        external.answer("x", 8, 0.0)
    assert endpoint.calls == calls  # not called while open
    time.sleep(0.65)
    assert external.breaker.state() == "half-open"
    endpoint.script = []
    assert external.answer("x", 8, 0.0).text and external.breaker.state() == "closed"


def test_a_failed_trial_call_reopens_the_circuit():
    now = [0.0]
    breaker = CircuitBreaker(failures=2, open_seconds=10, clock=lambda: now[0])
    breaker.failed()
    assert breaker.state() == "closed" and breaker.allow()
    breaker.failed()
    assert breaker.state() == "open" and not breaker.allow()
    now[0] = 11
    assert breaker.allow() and not breaker.allow()  # one trial call at a time
    breaker.failed()
    assert breaker.state() == "open" and breaker.reopens_in() == 10


def test_the_server_asks_api_b_when_unsure_and_flags_the_local_answer_when_it_cannot(
    home, endpoint
):
    deploy_tiny(home, "acme")  # untrained: its confidence is far under the threshold
    settings = ServerSettings(
        deployments_root=home.root / "deployments",
        query_db_url=home.queries_db_url,
        teacher_threshold=0.9,
        teacher=TeacherSettings(endpoint.base_url, "big-model", budget_seconds=0.5),
    )
    body = {"prompt": "the ", "max_tokens": 12, "user_id": "u", "temperature": 0}
    with TestClient(create_app(settings)) as client:
        taught = client.post("/v1/agents/acme/generate", json=body).json()
        assert taught["fallback"] is True and taught["model_version"] == "api-b:big-model"
        assert taught["text"] == "the teacher says hello"[:12]  # max_tokens characters
        assert taught["teacher_error"] is None
        endpoint.script = ["500"] * 50
        local = client.post("/v1/agents/acme/generate", json=body).json()
        assert local["fallback"] is False and local["model_version"] == "1.0.0"
        assert "API B gave no answer within 0.5 s" in local["teacher_error"]
        metrics = client.get("/metrics").text
        assert 'thunder_teacher_calls_total{outcome="answered"} 1.0' in metrics
        assert 'thunder_teacher_calls_total{outcome="failed"} 1.0' in metrics
        client.app.state.writer.flush()
    with QueryStore.open(home.queries_db_url) as store:
        (example,) = store.distillation_examples("acme", 0.8, 10)
        assert example.response.startswith("the teacher")


def test_the_teachers_api_key_stays_out_of_its_settings_repr():
    settings = TeacherSettings("http://127.0.0.1:9/v1", "big-model", "sk-secret-123")
    assert "sk-secret-123" not in repr(settings) and "big-model" in repr(settings)
