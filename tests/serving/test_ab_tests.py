"""A/B tests as objects through the admin API: two agents test at once, each with its own
split; live results count what was answered and rated; a stopped test sends its challenger
nobody; keys limited to one agent cannot see or stop another's test; every action is audited."""

import pytest
from fastapi.testclient import TestClient

from tests.factories import deploy_tiny
from thunder_dagster.access.keys import KeyStore
from thunder_dagster.feedback.experiments import AbTestError, AbTestStore, challenger_share
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.models import variant_for
from thunder_dagster.serving.state import ServerSettings

USERS = [f"user-{n}" for n in range(300)]


def settings(home, **overrides):
    defaults = {
        "query_db_url": home.queries_db_url,
        "reload_seconds": 0.05,
        "challenger_share": 0.5,
        "split_refresh_seconds": 0.0,
    }
    return ServerSettings(deployments_root=home.root / "deployments", **(defaults | overrides))


@pytest.fixture
def served(home, store):
    for agent in ("acme", "globex"):
        deploy_tiny(home, agent)
        deploy_tiny(home, agent, seed=1, role="challenger")
    deploy_tiny(home, "initech")
    with TestClient(create_app(settings(home))) as client:
        yield client


def variants(client, agent: str) -> dict[str, str]:
    found = {}
    for user in USERS:
        body = {"prompt": "the ", "max_tokens": 2, "user_id": user, "temperature": 0}
        answer = client.post(f"/v1/agents/{agent}/generate", json=body)
        assert answer.status_code == 200, answer.text
        found[user] = answer.json()
    return found


def test_two_agents_run_tests_with_their_own_splits_and_a_stopped_one_sends_nobody(served):
    acme = served.post("/v1/admin/agents/acme/ab-tests", json={"split": 0.1})
    globex = served.post(
        "/v1/admin/agents/globex/ab-tests",
        json={"split": 0.8, "min_sample": 20, "confidence": 0.99},
    )
    assert acme.status_code == globex.status_code == 201, (acme.text, globex.text)
    assert acme.json()["min_sample"] == 1000 and acme.json()["confidence"] == 0.95
    assert acme.json()["challenger_version"] == "1.1.0" and acme.json()["status"] == "running"
    for agent, split in (("acme", 0.1), ("globex", 0.8)):
        answers = variants(served, agent)
        # The variant is the user's hash bucket under the agent's own split, in every process.
        assert all(
            answer["variant"] == variant_for(agent, user, split) for user, answer in answers.items()
        )
        share = sum(answer["variant"] == "challenger" for answer in answers.values()) / len(USERS)
        assert abs(share - split) < 0.08, (agent, share)
        assert {a["model_version"] for a in answers.values() if a["variant"] == "challenger"} == {
            "1.1.0"
        }
    # Half of globex's answers rated: the live results count them per variant.
    answers = variants(served, "globex")
    rated = {"champion": 0, "challenger": 0}
    for answer in list(answers.values())[::2]:
        score = 5 if answer["variant"] == "challenger" else 2
        assert (
            served.post(
                "/v1/feedback", json={"query_id": answer["query_id"], "score": score}
            ).status_code
            == 200
        )
        rated[answer["variant"]] += 1
    live = served.get(f"/v1/admin/ab-tests/{globex.json()['id']}").json()
    # Each user asked twice since the test began, and got the same variant both times.
    champions = sum(answer["variant"] == "champion" for answer in answers.values())
    assert live["champion"]["answers"] == 2 * champions
    assert live["challenger"]["answers"] == 2 * (len(USERS) - champions)
    assert (live["champion"]["rated"], live["challenger"]["rated"]) == (
        rated["champion"],
        rated["challenger"],
    )
    assert live["challenger"]["positive_rate"] == 1.0 and live["champion"]["positive_rate"] == 0
    assert live["verdict"] == "promote" and live["positive_rate_p_value"] < 0.01
    # acme stopped early: its challenger answers nobody; globex's split is untouched.
    stop = served.post(f"/v1/admin/ab-tests/{acme.json()['id']}/stop", json={"reason": "bad"})
    assert stop.status_code == 200 and stop.json()["status"] == "stopped"
    assert {a["variant"] for a in variants(served, "acme").values()} == {"champion"}
    assert any(a["variant"] == "challenger" for a in variants(served, "globex").values())
    again = served.post(f"/v1/admin/ab-tests/{acme.json()['id']}/stop", json={})
    assert again.status_code == 409 and "already ended: stopped" in again.json()["detail"]
    listed = served.get("/v1/admin/agents/acme/ab-tests").json()
    assert [(t["status"], t["reason"]) for t in listed] == [("stopped", "bad")]


def test_a_test_needs_a_challenger_and_an_agent_runs_one_at_a_time(served):
    none = served.post("/v1/admin/agents/initech/ab-tests", json={"split": 0.5})
    assert none.status_code == 409 and "no challenger to test" in none.json()["detail"]
    assert served.post("/v1/admin/agents/nobody/ab-tests", json={"split": 0.5}).status_code == 404
    assert served.post("/v1/admin/agents/acme/ab-tests", json={"split": 0.3}).status_code == 201
    second = served.post("/v1/admin/agents/acme/ab-tests", json={"split": 0.4})
    assert second.status_code == 409 and "already runs A/B test" in second.json()["detail"]
    for bad in ({"split": 0}, {"split": 1.0}, {"split": 0.5, "min_sample": 0}):
        answer = served.post("/v1/admin/agents/globex/ab-tests", json=bad)
        assert answer.status_code == 422, bad
    assert served.get("/v1/admin/ab-tests/0123456789ab").status_code == 404


def test_keys_limit_tests_to_their_agents_and_every_action_is_audited(home, store):
    deploy_tiny(home, "acme")
    deploy_tiny(home, "acme", seed=1, role="challenger")
    deploy_tiny(home, "globex")
    deploy_tiny(home, "globex", seed=1, role="challenger")
    keys = KeyStore(store.engine)
    _, acme_admin = keys.create("acme-ops", ["admin"], agents=["acme"])
    _, admin = keys.create("ops", ["admin"])
    keyed = settings(home, auth="keys", key_refresh_seconds=0.0)
    with TestClient(create_app(keyed)) as client:
        as_acme = {"Authorization": f"Bearer {acme_admin}"}
        as_ops = {"Authorization": f"Bearer {admin}"}
        post = client.post
        test = post("/v1/admin/agents/globex/ab-tests", json={"split": 0.2}, headers=as_ops)
        assert test.status_code == 201
        assert (
            post(
                "/v1/admin/agents/globex/ab-tests", json={"split": 0.2}, headers=as_acme
            ).status_code
            == 403
        )
        path = f"/v1/admin/ab-tests/{test.json()['id']}"
        assert client.get(path, headers=as_acme).status_code == 403
        assert post(f"{path}/stop", json={}, headers=as_acme).status_code == 403
        assert client.get(path).status_code == 401
        assert post(f"{path}/stop", json={}, headers=as_ops).status_code == 200
    actions = [(e.action, e.outcome) for e in reversed(keys.audit())]
    # Refusals are recorded too, the 401 of a request without a key among them.
    assert actions == [
        ("ab_test.create", "ok"),
        ("ab_test.create", "denied"),
        ("ab_test.read", "denied"),
        ("ab_test.stop", "denied"),
        ("ab_test.read", "denied"),
        ("ab_test.stop", "ok"),
    ]
    assert test.json()["created_by"].startswith("key:") and "(ops)" in test.json()["created_by"]


def test_the_store_keeps_one_running_test_per_agent_and_shares_follow_the_latest(store):
    tests = AbTestStore(store.engine)
    first = tests.create("acme", "1.0.0", "1.1.0", 0.25, "cli")
    with pytest.raises(AbTestError, match="already runs A/B test"):
        tests.create("acme", "1.0.0", "1.1.0", 0.5, "cli")
    latest = tests.latest_per_agent()
    assert challenger_share(latest, "acme", "1.1.0", 0.2) == 0.25
    # Another challenger version than the test's, or an agent without one: the default.
    assert challenger_share(latest, "acme", "1.2.0", 0.2) == 0.2
    assert challenger_share(latest, "globex", "1.1.0", 0.2) == 0.2
    tests.end(first.id, "stopped", "cli", "enough")
    assert challenger_share(tests.latest_per_agent(), "acme", "1.1.0", 0.2) == 0.0
    second = tests.create("acme", "1.0.0", "1.1.0", 0.5, "cli")
    assert tests.running("acme").id == second.id
    with pytest.raises(AbTestError, match=r"split 1\.5"):
        tests.create("globex", "1.0.0", "1.1.0", 1.5, "cli")
