"""/metrics: the names and labels an operator's Prometheus scrapes, with bounded label values."""

import time

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from tests.factories import deploy_tiny
from thunder_dagster.files import write_atomically
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.state import ServerSettings


@pytest.fixture
def served(home):
    deploy_tiny(home, "acme")
    settings = ServerSettings(
        deployments_root=home.root / "deployments",
        query_db_url=home.queries_db_url,
        reload_seconds=0.05,
        challenger_share=0.0,
        encoder_cache_dir=home.encoder_cache_dir,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def scrape(client) -> dict:
    """sample name -> [(labels, value)]"""
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    samples: dict = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append((sample.labels, sample.value))
    return samples


def value(samples, name, **labels) -> float:
    matching = [v for found, v in samples.get(name, []) if labels.items() <= found.items()]
    assert matching, f"no {name} with {labels}: {samples.get(name)}"
    return sum(matching)


def ask(client, agent="acme", user="ann-secret-user"):
    body = {"prompt": "the ", "max_tokens": 6, "temperature": 0.0, "user_id": user}
    return client.post(f"/v1/agents/{agent}/generate", json=body)


def test_requests_latency_generation_and_confidence_are_counted_by_agent_and_variant(served):
    assert ask(served).status_code == 200
    assert ask(served).status_code == 200
    assert ask(served, agent="ghost").status_code == 404
    assert served.post("/v1/agents/acme/generate", json={"prompt": 1}).status_code == 422
    samples = scrape(served)
    generate = "/v1/agents/{agent_id}/generate"
    assert (
        value(samples, "thunder_requests_total", endpoint=generate, agent="acme", status="200") == 2
    )
    # An agent the server does not hold is "other": a client cannot mint label values.
    assert value(samples, "thunder_requests_total", agent="other", status="404") == 1
    assert value(samples, "thunder_requests_total", agent="acme", status="422") == 1
    assert value(samples, "thunder_request_seconds_count", endpoint=generate) == 4
    assert value(samples, "thunder_model_seconds_count", agent="acme", variant="champion") == 2
    assert value(samples, "thunder_generated_characters_total", agent="acme") == 12
    assert value(samples, "thunder_confidence_count", agent="acme", variant="champion") == 2
    assert value(samples, "thunder_confidence_bucket", agent="acme", le="1.0") == 2
    assert value(samples, "thunder_deployed_model_info", agent="acme", role="champion") == 1
    [(labels, _)] = samples["thunder_deployed_model_info"]
    assert labels["version"] == "1.0.0"
    assert (
        value(samples, "thunder_reloads_total", agent="acme", role="champion", outcome="loaded")
        == 1
    )
    assert value(samples, "thunder_spool_rows", kind="answer") == 0
    assert value(samples, "thunder_query_log_lost_rows") == 0
    assert "ann-secret-user" not in served.get("/metrics").text
    label_values = {v for found in samples.values() for labels, _ in found for v in labels.values()}
    assert {"ann-secret-user", "the ", "ghost"} & label_values == set()


def test_a_refused_candidate_and_a_new_deployment_are_counted_as_reloads(served, home):
    # Written whole (renamed into place): the watcher must not catch it half-written, which
    # would be a second, different bad file and a second refusal.
    write_atomically(home.deployments_dir("acme") / "challenger.json", b"{not json")
    deploy_tiny(home, "acme", seed=1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        samples = scrape(served)
        loaded = value(samples, "thunder_reloads_total", agent="acme", outcome="loaded")
        if loaded >= 2 and len(samples["thunder_reloads_total"]) >= 2:
            break
        time.sleep(0.05)
    assert value(samples, "thunder_reloads_total", role="champion", outcome="loaded") == 2
    assert value(samples, "thunder_reloads_total", role="challenger", outcome="refused") == 1
    [(labels, _)] = samples["thunder_deployed_model_info"]
    assert labels["version"] == "1.1.0"  # the second champion release
