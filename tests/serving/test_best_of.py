"""Best-of-n as an A/B challenger (seed 003): a test of the champion answering best-of-n
against single answers, made through the admin API, splits users like a model's test and
logs its answers under their own version; once it wins, the agent adopts best-of-n and every
server answers that way by default."""

import json
from datetime import timedelta

import dagster as dg
import pytest
from fastapi.testclient import TestClient

from tests.factories import deploy_reward, deploy_tiny, log, resources
from tests.processes import wait_for
from thunder_dagster.assets.abtests import ab_test_result, champion_promotion
from thunder_dagster.deployments.pointers import BEST_OF_NAME
from thunder_dagster.feedback.experiments import AbTestStore, best_of_version
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.models import variant_for
from thunder_dagster.serving.state import ServerSettings
from thunder_dagster.times import utc_now


def settings(home) -> ServerSettings:
    return ServerSettings(
        deployments_root=home.root / "deployments",
        query_db_url=home.queries_db_url,
        encoder_cache_dir=home.encoder_cache_dir,
        split_refresh_seconds=0.05,
        best_of_seconds=60.0,
        challenger_share=0.0,
    )


@pytest.mark.clock
def test_a_best_of_test_answers_its_challenger_users_best_of_n_and_logs_them_apart(home, store):
    deploy_tiny(home, "acme")
    deploy_reward(home, "acme")
    deploy_tiny(home, "zeta")
    with TestClient(create_app(settings(home))) as client:
        refused = client.post("/v1/admin/agents/zeta/ab-tests", json={"split": 0.5, "best_of": 3})
        assert refused.status_code == 409 and "no reward model yet" in refused.json()["detail"]
        made = client.post("/v1/admin/agents/acme/ab-tests", json={"split": 0.5, "best_of": 3})
        assert made.status_code == 201, made.text
        assert made.json()["challenger_version"] == "1.0.0+best-of-3"
        wait_for(
            lambda: client.app.state.splits.best_of_test("acme", "1.0.0") is not None,
            10,
            "the server to read the best-of test",
        )
        seen = set()
        for number in range(16):
            user = f"user-{number}"
            body = {"prompt": "the cat", "user_id": user, "temperature": 1.0, "max_tokens": 20}
            answer = client.post("/v1/agents/acme/generate", json=body).json()
            expected = variant_for("acme", user, 0.5)
            assert answer["variant"] == expected
            if expected == "challenger":
                assert (answer["model_version"], answer["candidates"]) == ("1.0.0+best-of-3", 3)
            else:
                assert (answer["model_version"], answer["candidates"]) == ("1.0.0", 1)
            seen.add(expected)
        assert seen == {"champion", "challenger"}
    logged = {
        (o.variant, o.model_version) for o in store.outcomes("acme", utc_now() - timedelta(1))
    }
    assert logged == {("champion", "1.0.0"), ("challenger", "1.0.0+best-of-3")}


@pytest.mark.clock
def test_a_best_of_test_that_wins_is_adopted_and_answers_best_of_n_by_default(home, store):
    deploy_tiny(home, "acme")
    deploy_reward(home, "acme")
    tested = best_of_version("1.0.0", 3)
    test = AbTestStore(store.engine).create("acme", "1.0.0", tested, 0.5, "test", min_sample=40)
    at = utc_now() + timedelta(seconds=1)
    log(store, 60, at, score=lambda i: 2 if i % 3 else 4, variant="champion")
    log(
        store, 60, at, score=lambda i: 5 if i % 6 else 2, variant="challenger", model_version=tested
    )
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["acme"])
        result = dg.materialize(
            [ab_test_result, champion_promotion],
            partition_key="acme",
            instance=instance,
            resources=resources(home),
            raise_on_error=False,
        )
    assert result.success, [e.message for e in result.all_events if e.is_failure]
    [evaluated] = result.asset_materializations_for_node("ab_test_result")
    assert evaluated.metadata["decision"].value == "promote"
    assert evaluated.metadata["challenger_version"].value == tested
    adopted = json.loads((home.deployments_dir("acme") / BEST_OF_NAME).read_text())
    assert adopted["best_of"] == 3 and adopted["champion_version"] == "1.0.0"
    assert AbTestStore(store.engine).get(test.id).status == "promoted"
    with TestClient(create_app(settings(home))) as client:
        body = {"prompt": "the cat", "user_id": "anyone", "temperature": 1.0, "max_tokens": 20}
        answer = client.post("/v1/agents/acme/generate", json=body).json()
        assert answer["candidates"] == 3 and answer["variant"] == "champion"
        once = client.post("/v1/agents/acme/generate", json=body | {"best_of": 1}).json()
        assert once["candidates"] == 1


def test_the_hidden_preference_rewards_an_answer_that_spells_one_of_the_agents_words(home):
    import numpy as np

    from thunder_dagster.documents.datasets import write_training_dataset
    from thunder_dagster.serving.simulation import document_words, preferred_score

    text = "Sourdough loaves rise overnight; sourdough needs patience and warm water."
    write_training_dataset(
        "acme",
        [("d1", "reference", "a.txt", 0, "d1-0", 0, len(text), text)],
        home.processed_dir("acme"),
    )
    words = document_words(home, "acme")
    assert {"sourdough", "loaves", "overnight", "patience"} <= words
    assert "rise" not in words and "warm" not in words  # five letters or more
    rng = np.random.default_rng(0)
    liked, unliked = "xq SOURDOUGH zz patience", "xq sourdough zz sourdough patien"
    assert {preferred_score(liked, words, rng) for _ in range(40)} == {4, 5}
    assert {preferred_score(unliked, words, rng) for _ in range(40)} == {1, 2}


def test_best_of_answers_with_the_candidate_its_reward_model_scores_highest(home, monkeypatch):
    """Every candidate drawn is recorded (the real generator, watched), scored again by the
    agent's reward model here, and the answer must be the highest-scored one."""
    import numpy as np

    from thunder_dagster.serving import answering
    from thunder_dagster.serving.answering import Question

    deploy_tiny(home, "acme")
    deploy_reward(home, "acme")
    drawn = []

    def watched(*args, **kwargs):
        generation = answering_generate(*args, **kwargs)
        drawn.append(generation.text)
        return generation

    answering_generate = answering.generate
    monkeypatch.setattr(answering, "generate", watched)
    with TestClient(create_app(settings(home))) as client:
        answerer, state = client.app.state.answerer, client.app.state.serving
        model = state.pool.get("acme").champion
        question = Question("the cat", "anyone", max_tokens=24, temperature=1.5)
        for _ in range(3):
            drawn.clear()
            text, _, ranked = answerer.best_answer("acme", model, question, (), 5)
            vectors = state.retrieval.encode_many([question.prompt, *drawn])
            scores = state.rewards.get("acme").scores(vectors[0], vectors[1:])
            assert ranked.candidates == len(drawn) == 5
            assert len(set(np.round(scores, 6))) > 1, "the candidates scored alike: no choice"
            assert text == drawn[int(np.argmax(scores))]
            assert ranked.reward == pytest.approx(float(scores.max()), abs=1e-5)
