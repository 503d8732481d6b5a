"""reward_model through the graph on a hidden preference (answers about baking rated high,
others low): users' ratings from the query log and AI grades from API B (a loopback
OpenAI-compatible server grading by the same preference: no real endpoint is reachable here),
its three blocking checks and its pointer; then the server's best_of ranking answers with it,
and saying why when it cannot."""

import json
import random
from datetime import UTC, datetime

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from tests.factories import deploy_tiny, resources
from thunder_dagster.assets.rewards import reward_model, rubric_id
from thunder_dagster.deployments.pointers import REWARD_NAME
from thunder_dagster.feedback.records import QueryRecord
from thunder_dagster.modeling.rewards import RUBRIC
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.state import ServerSettings

AGENT = "bakery"
PROMPTS = ["what should I do today", "any advice for the morning", "tell me something useful"]
ON_TOPIC = ["knead the dough and proof it", "preheat the oven for the bread", "dust the loaf"]
OFF_TOPIC = ["the train leaves at noon", "paint the fence blue", "the match ended in a draw"]
REWARD = {"ops": {"reward_model": {"config": {"trials": 2, "epochs": 60, "minutes": 2}}}}


def answers(store, count: int = 160, seed: int = 0) -> int:
    """Logged answers of the agent, three in four rated by their users (4-5 when about baking,
    1-2 when not), the fourth left for the teacher. Returns how many are unrated."""
    rng = random.Random(seed)
    unrated = 0
    for n in range(count):
        good = rng.random() < 0.5
        query_id = store.log_query(
            QueryRecord(
                agent_id=AGENT,
                user_id=f"u{n}",
                variant="champion",
                model_version="1.0.0",
                prompt=f"{rng.choice(PROMPTS)} ({n})",
                response=f"{rng.choice(ON_TOPIC if good else OFF_TOPIC)}, note {n}",
                confidence=0.6,
                fallback=False,
                latency_ms=3.0,
            ),
            at=datetime(2026, 12, 1, 12, tzinfo=UTC),
        )
        if n % 4 == 3:
            unrated += 1
        else:
            store.add_feedback(query_id, rng.choice([4, 5]) if good else rng.choice([1, 2]))
    return unrated


def grade_by_preference(body: dict) -> str:
    """The loopback teacher's grade: the rubric as the system message, the answer after it."""
    assert body["messages"][0] == {"role": "system", "content": RUBRIC}
    answer = body["messages"][-1]["content"].split("Answer:\n", 1)[1]
    return "5" if any(phrase in answer for phrase in ON_TOPIC) else "1"


@pytest.fixture
def rewarded(home, store, endpoint, monkeypatch):
    deploy_tiny(home, AGENT)
    unrated = answers(store)
    endpoint.reply = grade_by_preference
    monkeypatch.setenv("THUNDER_TEACHER_URL", endpoint.base_url)
    monkeypatch.setenv("THUNDER_TEACHER_MODEL", "grader")
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", [AGENT])
        result = dg.materialize(
            [reward_model],
            partition_key=AGENT,
            instance=instance,
            resources=resources(home),
            run_config=REWARD,
            raise_on_error=False,
        )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    [materialization] = result.asset_materializations_for_node("reward_model")
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    return result, metadata, unrated


def test_the_reward_model_learns_from_ratings_and_ai_grades_and_best_of_ranks_with_it(
    rewarded, home, store, endpoint
):
    result, metadata, unrated = rewarded
    assert metadata["ai_grades_new"] == unrated == endpoint.calls
    assert metadata["grader"] == "api-b:grader" and metadata["ai_grading_failures"] == 0
    assert store.ungraded_answers(AGENT, rubric_id(RUBRIC), 100) == []
    graded = store.ai_graded_answers(AGENT, rubric_id(RUBRIC), 100)
    assert len(graded) == unrated and {score for *_, score in graded} == {1, 5}
    assert metadata["trained_on_ai"] > 0 and metadata["trained_on_human"] > 60
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {"parity": True, "finite_outputs": True, "better_than_chance": True}
    assert metadata["spearman"] > 0.4 and metadata["pairwise_accuracy"] > 0.6
    pointer = json.loads((home.deployments_dir(AGENT) / REWARD_NAME).read_text())
    assert pointer["encoder"].startswith("all-MiniLM-L6-v2-") and metadata["served"] is True
    best_of_ranks_with_it(home)


def best_of_ranks_with_it(home):
    """The server's best_of returns the answer the reward model ranks highest (the same
    trained model: one training serves both halves of the test)."""
    from thunder_dagster.serving.rewards import RewardModels

    deploy_tiny(home, "plain")
    settings = ServerSettings(
        deployments_root=home.root / "deployments",
        query_db_url=home.queries_db_url,
        encoder_cache_dir=home.encoder_cache_dir,
        best_of_seconds=60.0,
        challenger_share=0.0,
    )
    body = {"prompt": "what should I do", "user_id": "u1", "temperature": 1.0, "max_tokens": 40}
    with TestClient(create_app(settings)) as client:
        ranked = client.post(f"/v1/agents/{AGENT}/generate", json=body | {"best_of": 4}).json()
        assert ranked["candidates"] == 4 and ranked["best_of_error"] is None
        # The score it reports is the reward model's for the answer it returned.
        retrieval = client.app.state.retrieval
        reward = RewardModels(home.deployments_dir(AGENT).parent, retrieval.encoder_version)
        vectors = retrieval.encode_many([body["prompt"], ranked["text"]])
        assert reward.get(AGENT).scores(vectors[0], vectors[1:])[0] == pytest.approx(
            ranked["reward"], abs=1e-4
        )
        single = client.post(f"/v1/agents/{AGENT}/generate", json=body).json()
        assert single["candidates"] == 1 and single["reward"] is None
        greedy = client.post(
            f"/v1/agents/{AGENT}/generate", json=body | {"best_of": 4, "temperature": 0}
        ).json()
        assert greedy["candidates"] == 1 and "temperature 0" in greedy["best_of_error"]
        # An agent without a reward model answers once and says why.
        plain = client.post("/v1/agents/plain/generate", json=body | {"best_of": 3}).json()
        assert plain["candidates"] == 1 and "no reward model yet" in plain["best_of_error"]
        # A reward pointer whose graph changed is refused, by reason, on /healthz too.
        tampered = json.loads((home.deployments_dir(AGENT) / REWARD_NAME).read_text())
        tampered["onnx_sha256"] = "0" * 64
        (home.deployments_dir("plain") / REWARD_NAME).write_text(json.dumps(tampered))
        refused = client.post("/v1/agents/plain/generate", json=body | {"best_of": 3}).json()
        assert "does not match its hash" in refused["best_of_error"]
        problems = client.get("/healthz").json()["problems"]
        assert any(
            p.get("agent") == "plain" and "reward model refused" in p["reason"] for p in problems
        )
        too_many = client.post(f"/v1/agents/{AGENT}/generate", json=body | {"best_of": 9})
        assert too_many.status_code == 422 and "best_of" in too_many.text
