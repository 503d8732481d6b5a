"""The search endpoint, grounded generation and the index hot reload, on real text with the
real encoder."""

import threading
import time

import pytest
from fastapi.testclient import TestClient

from tests.factories import CORPUS, deploy_tiny, index_agent
from thunder_dagster.feedback.store import QueryStore
from thunder_dagster.retrieval.index import POINTER
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.state import ServerSettings

SHAKESPEARE = (CORPUS / "text" / "tinyshakespeare.txt").read_text()
PLAYS = {f"part_{n}.txt": SHAKESPEARE[n * 4000 : (n + 1) * 4000] for n in range(3)}


def settings(home, **overrides):
    defaults = {
        "query_db_url": home.queries_db_url,
        "reload_seconds": 0.05,
        "challenger_share": 0.0,
        "encoder_cache_dir": home.encoder_cache_dir,
    }
    return ServerSettings(deployments_root=home.root / "deployments", **(defaults | overrides))


@pytest.fixture
def served(home):
    deploy_tiny(home, "bard")
    version = index_agent(home, "bard", PLAYS)
    with TestClient(create_app(settings(home))) as client:
        client.version = version
        yield client


def search(client, agent="bard", **body):
    return client.post(f"/v1/agents/{agent}/search", json={"query": "citizens", "k": 5} | body)


def test_search_finds_the_chunk_a_sentence_came_from(served):
    # A line of part_1, lowercased, a third of its words gone.
    line = "We are accounted poor citizens, the patricians good."
    assert line in PLAYS["part_0.txt"]
    answer = search(served, query="we accounted poor citizens patricians good", k=3)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["index_version"] == served.version and body["agent_id"] == "bard"
    top = body["results"][0]
    assert line in top["text"] and top["filename"] == "part_0.txt"
    assert PLAYS["part_0.txt"][top["start"] : top["end"]] == top["text"]
    assert top["found_by"] == "both" and top["category"] == "reference"
    assert len(body["results"]) == 3
    scores = [hit["score"] for hit in body["results"]]
    assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"query": ""}, "query"),
        ({"query": "   "}, "query"),
        ({"query": "x" * 4001}, "query"),
        ({"k": 0}, "k"),
        ({"k": 101}, "k"),
        ({"k": 2.5}, "k"),
    ],
)
def test_a_bad_search_gets_a_422_that_names_the_field(served, body, field):
    answer = search(served, **body)
    assert answer.status_code == 422, answer.text
    assert [problem["loc"][-1] for problem in answer.json()["detail"]] == [field]


def test_an_agent_without_an_index_gets_a_404_that_says_so(served, home):
    deploy_tiny(home, "acme")
    answer = search(served, agent="acme")
    assert answer.status_code == 404
    assert "acme" in answer.json()["detail"] and "no retrieval index" in answer.json()["detail"]
    assert search(served, agent="../etc").status_code == 404


def test_a_grounded_answer_lists_its_sources_and_the_log_keeps_them(served, home):
    payload = {
        "prompt": "First Citizen:",
        "max_tokens": 8,
        "temperature": 0.0,
        "user_id": "u1",
        "grounding": "retrieved",
    }
    answer = served.post("/v1/agents/bard/generate", json=payload)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    sources = body["sources"]
    assert len(sources) == 3
    hits = search(served, query="First Citizen:", k=3).json()["results"]
    assert [s["chunk_id"] for s in sources] == [hit["chunk_id"] for hit in hits]
    assert {s["filename"] for s in sources} <= set(PLAYS)
    plain = served.post("/v1/agents/bard/generate", json=payload | {"grounding": "none"})
    assert plain.json()["sources"] == []
    served.app.state.writer.flush()
    with QueryStore.open(home.queries_db_url) as store:
        assert store.query(body["query_id"]).sources == [s["chunk_id"] for s in sources]
        assert store.query(plain.json()["query_id"]).sources is None


def test_a_new_index_is_swapped_in_under_concurrent_searches_with_none_failing(served, home):
    failures, versions, stop = [], set(), threading.Event()

    def searching():
        while not stop.is_set():
            answer = search(served, query="the people and the senate")
            if answer.status_code != 200:
                failures.append(answer.text)
            else:
                versions.add(answer.json()["index_version"])

    threads = [threading.Thread(target=searching) for _ in range(3)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    newer = index_agent(home, "bard", PLAYS | {"letter.txt": SHAKESPEARE[50_000:52_000]})
    deadline = time.monotonic() + 20
    while newer not in versions and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)
    stop.set()
    for thread in threads:
        thread.join()
    assert failures == []
    assert versions == {served.version, newer}


def test_a_pointer_to_a_missing_index_is_refused_and_the_old_one_keeps_serving(served, home):
    (home.retrieval_dir("bard") / POINTER).write_text('{"version": "0123456789abcdef"}')
    (home.retrieval_dir("README")).mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        problems = served.get("/healthz").json()["problems"]
        if any(p.get("agent") == "bard" for p in problems):
            break
        time.sleep(0.05)
    [problem] = [p for p in problems if p.get("agent") == "bard"]
    assert "index refused" in problem["reason"] and "/" not in problem["reason"].split(": ", 1)[1]
    answer = search(served)
    assert answer.status_code == 200 and answer.json()["index_version"] == served.version
