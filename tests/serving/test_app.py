import shutil
import threading
import time
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from tests.factories import deploy_tiny
from tests.imports import loaded_after
from tests.processes import wait_for
from thunder_dagster.deployments.pointers import clear_undeployed, mark_undeployed
from thunder_dagster.feedback.store import QueryStore
from thunder_dagster.files import write_atomically
from thunder_dagster.modeling.cards import ModelCard
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.models import variant_for
from thunder_dagster.serving.state import ServerSettings


def settings(home, **overrides):
    defaults = {"query_db_url": home.queries_db_url, "reload_seconds": 0.05}
    return ServerSettings(deployments_root=home.root / "deployments", **(defaults | overrides))


@pytest.fixture
def served(home):
    deploy_tiny(home, "acme")
    with TestClient(create_app(settings(home, challenger_share=0.0))) as client:
        yield client


def ask(client, agent="acme", **body):
    payload = {"prompt": "the ", "max_tokens": 8, "temperature": 0.0, "user_id": "u1"} | body
    return client.post(f"/v1/agents/{agent}/generate", json=payload)


def test_generate_answers_and_feedback_joins_the_logged_query(served, home):
    health = served.get("/healthz").json()
    assert health["agents"]["acme"]["champion"] == "1.0.0"
    answer = ask(served)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert len(body["text"]) == 8 and 0 < body["confidence"] <= 1
    assert (body["model_version"], body["variant"], body["fallback"]) == (
        "1.0.0",
        "champion",
        False,
    )
    stored = served.post("/v1/feedback", json={"query_id": body["query_id"], "score": 5})
    assert stored.status_code == 200, stored.text
    store = QueryStore.open(home.queries_db_url)
    row = store.query(body["query_id"])
    assert row.prompt == "the " and row.response == body["text"] and row.user_id == "u1"
    stats = store.stats(
        "acme",
        row.created_at,
        row.created_at + (row.created_at - row.created_at).__class__(seconds=1),
    )
    assert stats.positive_feedback == 1
    store.close()


@pytest.mark.parametrize(
    ("path", "body", "status", "names"),
    [
        ("/v1/agents/nobody/generate", {}, 404, "unknown agent 'nobody'"),
        ("/v1/agents/acme/generate", {"max_tokens": 0}, 422, "max_tokens"),
        ("/v1/agents/acme/generate", {"max_tokens": 5000}, 422, "less than or equal to 1024"),
        ("/v1/agents/acme/generate", {"prompt": "x" * 5000}, 422, "at most 4000 characters"),
        ("/v1/agents/acme/generate", {"temperature": -1}, 422, "temperature"),
        ("/v1/agents/acme/generate", {"user_id": ""}, 422, "user_id"),
    ],
)
def test_bad_generate_requests_get_a_clear_4xx(served, path, body, status, names):
    payload = {"prompt": "the ", "max_tokens": 8, "temperature": 0.0, "user_id": "u1"} | body
    answer = served.post(path, json=payload)
    assert answer.status_code == status
    assert names in answer.text


def test_a_server_configured_tighter_than_the_api_names_its_own_limits(home):
    deploy_tiny(home, "acme")
    tight = settings(home, max_tokens=64, max_prompt_chars=100)
    with TestClient(create_app(tight)) as client:
        tokens = ask(client, max_tokens=100)
        prompt = ask(client, prompt="x" * 200)
    assert tokens.status_code == 422 and tokens.json()["detail"][0]["loc"] == ["body", "max_tokens"]
    assert "100, the limit is 64" in tokens.text
    assert prompt.status_code == 422 and "200 characters, the limit is 100" in prompt.text


def test_malformed_bodies_and_bad_feedback_get_a_clear_4xx(served):
    assert served.post("/v1/agents/acme/generate", content=b"{not json").status_code == 422
    assert served.post("/v1/agents/acme/generate", json={"prompt": "x"}).status_code == 422
    query_id = ask(served).json()["query_id"]
    for score in (0, 6, "five"):
        answer = served.post("/v1/feedback", json={"query_id": query_id, "score": score})
        assert answer.status_code == 422 and "score" in answer.text
    unknown = served.post("/v1/feedback", json={"query_id": "f" * 32, "score": 3})
    assert unknown.status_code == 404 and "unknown query_id" in unknown.text


def test_the_split_is_stable_and_near_its_share():
    users = [f"user-{n}" for n in range(4000)]
    first = [variant_for("acme", user, 0.25) for user in users]
    assert first == [variant_for("acme", user, 0.25) for user in users]
    assert 0.22 < first.count("challenger") / len(users) < 0.28
    assert {variant_for("acme", user, 0.0) for user in users} == {"champion"}


def test_the_challenger_serves_its_users_and_the_teacher_answers_when_unsure(home):
    deploy_tiny(home, "acme", seed=0)
    deploy_tiny(home, "acme", seed=1, role="challenger")
    deploy_tiny(home, "acme", family="transformer", seed=2, role="teacher", hidden=64)
    # An untrained model's confidence is about 1/vocab: every answer is below 0.9.
    app = create_app(settings(home, challenger_share=0.5, teacher_threshold=0.9))
    with TestClient(app) as client:
        answers = [ask(client, user_id=f"u{n}").json() for n in range(20)]
    for n, body in enumerate(answers):
        assert body["variant"] == variant_for("acme", f"u{n}", 0.5)
        assert body["fallback"] is True and body["model_version"] == "2.0.0"
    assert {body["variant"] for body in answers} == {"champion", "challenger"}
    with QueryStore.open(home.queries_db_url) as store:
        rows = [store.query(body["query_id"]) for body in answers]
    # The log keeps the local model's confidence for the daily rules, the teacher's beside it.
    for row, body in zip(rows, answers, strict=True):
        assert row.confidence < 0.9 and row.teacher_confidence == pytest.approx(body["confidence"])
        assert row.confidence != row.teacher_confidence


def test_a_new_pointer_is_picked_up_without_failing_requests_in_flight(home):
    deploy_tiny(home, "acme", seed=0)
    failures, versions, stop = [], set(), threading.Event()
    with TestClient(create_app(settings(home, challenger_share=0.0))) as client:

        def hammer(worker):
            while not stop.is_set():
                answer = ask(client, user_id=f"w{worker}", temperature=0.8, max_tokens=16)
                if answer.status_code != 200:
                    failures.append(answer.text)
                else:
                    versions.add(answer.json()["model_version"])

        threads = [threading.Thread(target=hammer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(0.3)
        deploy_tiny(home, "acme", seed=1)
        deadline = time.monotonic() + 10
        while "1.1.0" not in versions and time.monotonic() < deadline:
            time.sleep(0.05)
        stop.set()
        for thread in threads:
            thread.join()
        assert client.get("/healthz").json()["agents"]["acme"]["champion"] == "1.1.0"
    assert failures == []
    assert versions == {"1.0.0", "1.1.0"}


def test_a_broken_model_file_is_refused_and_the_old_model_keeps_serving(home):
    deploy_tiny(home, "acme", seed=0)
    with TestClient(create_app(settings(home, challenger_share=0.0))) as client:
        released = deploy_tiny(home, "acme", seed=1)
        served = wait_for_health(
            client, lambda r: r.json()["agents"]["acme"]["champion"] == "1.1.0"
        )
        assert served.json()["agents"]["acme"]["champion"] == "1.1.0"
        # Damage the served release's file: its hash no longer matches its pointer's.
        with open(released.onnx_path, "r+b") as handle:
            handle.seek(100)
            handle.write(b"\x00" * 16)
        # Replace the pointer with itself so the watcher loads it again, now with the damaged
        # file; atomically, as a release moves it: a watcher that reads a pointer half
        # written refuses it for that, not for the damage this test is about.
        pointer = home.deployments_dir("acme") / "champion.json"
        write_atomically(pointer, pointer.read_bytes())
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            health = client.get("/healthz").json()["agents"]["acme"]
            if health["refused"]:
                break
            time.sleep(0.05)
        assert "does not match the hash" in health["refused"]["champion"]
        assert health["champion"] == "1.1.0"  # the model in memory, loaded while it was whole
        assert ask(client).status_code == 200


def test_the_server_imports_neither_dagster_nor_tensorflow_nor_the_store_at_start():
    modules = ["thunder_dagster.cli", "thunder_dagster.serving.api.app"]
    heavy = ("tensorflow", "keras", "dagster", "mlflow", "optuna", "sqlalchemy", "alembic")
    assert loaded_after(modules, heavy) == []


def wait_for_health(client, check, seconds=10.0):
    """The /healthz response once `check(response)` holds; the last one if it never does."""
    deadline = time.monotonic() + seconds
    while True:
        response = client.get("/healthz")
        if check(response) or time.monotonic() > deadline:
            return response
        time.sleep(0.05)


def test_stray_entries_under_deployments_never_stop_the_server(home):
    deploy_tiny(home, "acme")
    root = home.root / "deployments"
    (root / "README").write_text("notes an operator left here")
    (root / "zeta").write_text("a file named like an agent")
    (root / "lost+found").mkdir()
    (root / "empty").mkdir()
    with TestClient(create_app(settings(home, challenger_share=0.0))) as client:
        health = client.get("/healthz")
        assert health.status_code == 200, health.text
        assert set(health.json()["agents"]) == {"acme"}
        assert ask(client).status_code == 200


def test_every_bad_candidate_is_refused_with_a_reason_and_the_server_answers_throughout(home):
    deploy_tiny(home, "acme", seed=0)
    # The watcher's own looks are an hour apart and the test looks when a candidate is ready:
    # a look between a release and its damage would load the candidate while it was whole.
    quiet = settings(home, challenger_share=0.0, reload_seconds=3600)
    with TestClient(create_app(quiet)) as client:
        answered = []
        pointer = home.deployments_dir("acme") / "champion.json"

        def candidate(damage, expected: str) -> str:
            released = deploy_tiny(home, "acme", seed=len(answered) + 1)
            damage(released)
            write_atomically(pointer, pointer.read_bytes())
            client.app.state.pool.refresh()
            health = wait_for_health(
                client,
                lambda r: expected in r.json()["agents"]["acme"]["refused"].get("champion", ""),
            ).json()
            answered.append(ask(client).status_code)
            return health["agents"]["acme"]["refused"].get("champion", "")

        def wrong_context(released):
            card = ModelCard.read(released.model_dir)
            card.replace(context_length=card.context_length * 2).write(released.model_dir)

        def truncated(released):
            with open(released.onnx_path, "r+b") as handle:
                handle.truncate(100)

        def missing_folder(released):
            shutil.rmtree(released.model_dir)

        reasons = [
            candidate(wrong_context, "probe of the card's context length 32 failed"),
            candidate(truncated, "does not match the hash"),
            candidate(missing_folder, "card.json"),
        ]
        assert "probe of the card's context length 32 failed" in reasons[0]
        assert "does not match the hash" in reasons[1]
        assert "card.json" in reasons[2]
        assert not any(str(home.root) in reason for reason in reasons)
        assert answered == [200, 200, 200]
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        (problem,) = health.json()["problems"]
        assert problem["agent"] == "acme" and problem["reason"].startswith("champion refused:")
        assert health.json()["agents"]["acme"]["champion"] == "1.0.0"


def test_healthz_is_503_when_no_agent_can_answer_and_names_why(home):
    released = deploy_tiny(home, "acme")
    shutil.rmtree(released.model_dir)
    with TestClient(create_app(settings(home))) as client:
        health = client.get("/healthz")
        assert health.status_code == 503
        (problem,) = health.json()["problems"]
        assert problem["agent"] == "acme"
        assert problem["reason"].startswith("no loadable champion:")
        assert ask(client).status_code == 404


def test_a_stopped_watcher_is_reported_and_the_server_still_answers(served):
    served.app.state.pool.stop()
    health = served.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "degraded"
    assert "the pointer watcher has stopped" in health.json()["problems"][0]["reason"]
    assert ask(served).status_code == 200


@pytest.mark.clock
def test_without_its_store_the_server_answers_spools_and_replays_when_it_opens(home, tmp_path):
    deploy_tiny(home, "acme")
    # A file where the store's folder should be: the store cannot open until it is gone.
    blocker = tmp_path / "db"
    blocker.write_text("not a folder")
    url = f"sqlite:///{blocker}/queries.db"
    server = create_app(settings(home, query_db_url=url, store_retry_seconds=0.1))
    with TestClient(server) as client:
        health = wait_for_health(client, lambda r: r.json()["status"] == "degraded")
        assert health.status_code == 200
        assert "query-log store cannot open" in health.json()["problems"][0]["reason"]
        answer = ask(client)
        assert answer.status_code == 200, answer.text
        query_id = answer.json()["query_id"]
        rated = client.post("/v1/feedback", json={"query_id": query_id, "score": 4})
        assert rated.status_code == 200 and rated.json()["stored"] is False
        health = wait_for_health(client, lambda r: "spooled" in r.text)
        assert "1 answers and 1 ratings are spooled" in health.text
        blocker.unlink()
        health = wait_for_health(client, lambda r: r.json()["status"] == "ok")
        assert health.json()["problems"] == []
    with QueryStore.open(url) as store:
        assert store.query(query_id).response == answer.json()["text"]
        assert store.stats("acme", *day_around(store.query(query_id))).positive_feedback == 1


def day_around(row):
    return row.created_at - timedelta(hours=12), row.created_at + timedelta(hours=12)


GENERATE = "/v1/agents/acme/generate"


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/feedback", '{"query_id": "x", "score": NaN}', "score"),
        ("/v1/feedback", '{"query_id": "x", "score": Infinity}', "score"),
        (
            "/v1/agents/acme/generate",
            '{"prompt": "a", "user_id": "u", "max_tokens": NaN}',
            "max_tokens",
        ),
        (
            "/v1/agents/acme/generate",
            '{"prompt": "a", "user_id": "u", "temperature": NaN}',
            "temperature",
        ),
    ],
)
def test_nan_and_infinity_get_a_422_that_names_the_field(served, path, body, field):
    response = served.post(path, content=body, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert field in {str(part) for error in response.json()["detail"] for part in error["loc"]}


def test_an_undeployed_agent_gets_404_with_the_reason_and_is_no_problem_of_the_server(home):
    deploy_tiny(home, "acme")
    deploy_tiny(home, "globex")
    with TestClient(create_app(settings(home, challenger_share=0.0))) as client:
        mark_undeployed(home.deployments_dir("acme"), "cli:ops", "legal hold")
        body = {"prompt": "the ", "max_tokens": 2, "user_id": "u"}
        wait_for(
            lambda: client.post("/v1/agents/acme/generate", json=body).status_code == 404,
            10,
            "served",
        )
        refused = client.post("/v1/agents/acme/generate", json=body).json()["detail"]
        assert "undeployed" in refused and "legal hold" in refused
        searched = client.post("/v1/agents/acme/search", json={"query": "bread"})
        assert searched.status_code == 404 and "undeployed" in searched.json()["detail"]
        assert client.post("/v1/agents/globex/generate", json=body).status_code == 200
        health = client.get("/healthz")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        assert health.json()["undeployed"] == ["acme"] and "acme" not in health.json()["agents"]
        clear_undeployed(home.deployments_dir("acme"))
        wait_for(
            lambda: client.post("/v1/agents/acme/generate", json=body).status_code == 200,
            10,
            "unserved",
        )


def test_a_chat_agent_answers_its_prompt_laid_out_as_its_pairs_and_the_answer_ends_there(home):
    from thunder_dagster.serving.generation import generate
    from thunder_dagster.serving.loading import load_deployment
    from thunder_dagster.tasks.layouts import cut_answer, format_prompt

    deployed = deploy_tiny(home, "helper")
    plain = load_deployment(deployed)
    ModelCard.read(deployed.model_dir).replace(task="chat").write(deployed.model_dir)
    chat = load_deployment(deployed)
    assert (plain.task, chat.task) == ("generation", "chat")
    # The same weights continuing the laid-out prompt give the chat answer, cut at its end.
    expected = generate(plain, format_prompt("chat", "is the shop open"), 60, 1.0, seed=3)
    answered = generate(chat, "is the shop open", 60, 1.0, seed=3)
    assert answered.text == cut_answer("chat", expected.text) and answered.text
    assert answered.confidence == expected.confidence
    # Unlaid, the same prompt conditions the model otherwise (an untrained model's draws are
    # near uniform, so its characters may agree; the probabilities it gave them do not).
    assert generate(plain, "is the shop open", 60, 1.0, seed=3).confidence != answered.confidence
    settings = ServerSettings(deployments_root=home.root / "deployments", query_db_url="")
    with TestClient(create_app(settings)) as client:
        body = {"prompt": "is the shop open", "user_id": "u1", "temperature": 0.0}
        served = client.post("/v1/agents/helper/generate", json=body).json()
        greedy = generate(chat, "is the shop open", 128, 0.0)
        assert served["text"] == greedy.text


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/v1/agents/acme/generate", {"prompt": "the \u0000", "user_id": "u1"}, "prompt"),
        ("/v1/agents/acme/generate", {"prompt": "the ", "user_id": "u\u00001"}, "user_id"),
        ("/v1/feedback", {"query_id": "q", "score": 5, "comment": "a\u0000b"}, "comment"),
        ("/v1/agents/acme/classify", {"text": "hi\u0000", "user_id": "u1"}, "text"),
        (
            "/v1/chat/completions",
            {"model": "acme", "messages": [{"role": "user", "content": "hi\u0000"}]},
            "content",
        ),
        ("/v1/chat/completions", {"model": "acme", "messages": [], "user": "\u0000"}, "user"),
    ],
)
def test_a_nul_character_the_store_cannot_hold_is_refused_by_field(served, path, body, field):
    answer = served.post(path, json=body)
    assert answer.status_code == 422, answer.text
    problems = [p for p in answer.json()["detail"] if p["loc"][-1] == field]
    assert problems and "NUL" in problems[0]["msg"], answer.json()
