"""Chat and instruction agents answer from their documents through the instruct base, with no
training: the sample bakery's texts indexed, questions answered with their sources, questions
the documents do not cover refused (or answered, as the agent's settings say), every answer
logged, and the OpenAI-compatible routes with the official client."""

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.factories import index_agent
from thunder_dagster.instruct.grounding import not_covered
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.state import ServerSettings
from thunder_dagster.tasks.agents import settings_path, write_task

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
QUESTIONS = json.loads((SAMPLES / "questions.json").read_text())


def sample_texts() -> dict[str, str]:
    paths = sorted(SAMPLES.glob("src/*.txt")) + sorted(SAMPLES.glob("agent/*/*.txt"))
    return {path.name: path.read_text() for path in paths}


def settings(home, **overrides) -> ServerSettings:
    defaults = {
        "query_db_url": home.queries_db_url,
        "reload_seconds": 0.05,
        "encoder_cache_dir": home.encoder_cache_dir,
    }
    return ServerSettings(deployments_root=home.root / "deployments", **(defaults | overrides))


@pytest.fixture
def bakery(home, instruct_base):
    home.create_agent("bakery")
    write_task(home.agent_dir("bakery"), "chat")
    index_agent(home, "bakery", sample_texts())
    with TestClient(create_app(settings(home))) as client:
        yield client


def ask(client, question: str, **body):
    answer = client.post(
        "/v1/agents/bakery/generate",
        json={"prompt": question, "user_id": "u1", "temperature": 0.0, "max_tokens": 48} | body,
    )
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_chat_agent_answers_from_its_documents_with_sources_and_no_model(bakery, home):
    assert not (home.root / "deployments" / "bakery").exists()  # nothing was trained
    body = ask(bakery, "Between which temperatures must the walk-in cooler stay?")
    assert "one and four" in body["text"].lower()
    assert body["model_version"].startswith("base-") and body["variant"] == "champion"
    assert body["sources"] and body["sources"][0]["filename"] == "food_safety.txt"
    # The answer is logged under its query id, and a rating of it is taken.
    rated = bakery.post("/v1/feedback", json={"query_id": body["query_id"], "score": 5})
    assert rated.status_code == 200, rated.text
    body = ask(bakery, "On which day is the staff meeting?")
    assert "Tuesday" in body["text"]


def test_a_question_the_documents_do_not_cover_is_refused_or_answered_as_configured(bakery, home):
    for question in QUESTIONS["off_topic"][:3]:
        body = ask(bakery, question)
        assert body["text"] == not_covered("bakery") and body["sources"] == []
    path = settings_path(home.agent_dir("bakery"))
    settings_file = json.loads(path.read_text())
    path.write_text(json.dumps(settings_file | {"grounding": {"uncovered": "answer"}}))
    body = ask(bakery, "What is the capital of France?")
    assert body["text"] != not_covered("bakery") and "Paris" in body["text"]
    path.write_text(json.dumps(settings_file | {"grounding": {"uncovered": "maybe"}}))
    refused = bakery.post(
        "/v1/agents/bakery/generate", json={"prompt": "What is bread?", "user_id": "u1"}
    )
    assert refused.status_code == 409 and "uncovered is refuse or answer" in refused.text


def test_the_openai_client_chats_streams_and_embeds(bakery):
    import openai

    client = openai.OpenAI(base_url="http://testserver/v1", api_key="open", http_client=bakery)
    assert [model.id for model in client.models.list()] == ["bakery"]
    question = "Between which temperatures must the walk-in cooler stay?"
    completion = client.chat.completions.create(
        model="bakery",
        messages=[{"role": "user", "content": question}],
        max_tokens=48,
        temperature=0,
    )
    text = completion.choices[0].message.content
    assert "one and four" in text.lower() and completion.choices[0].finish_reason == "stop"
    assert completion.usage.total_tokens == (
        completion.usage.prompt_tokens + completion.usage.completion_tokens
    )
    extra = completion.model_extra
    assert extra["covered"] and extra["query_id"]
    assert "between one and four degrees" in extra["sources"][0]["quote"]
    stream = client.chat.completions.create(
        model="bakery",
        messages=[{"role": "user", "content": question}],
        max_tokens=48,
        temperature=0,
        stream=True,
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].usage.total_tokens == completion.usage.total_tokens
    assert chunks[-1].model_extra["sources"] == extra["sources"]
    # A conversation: the earlier turns travel with the last question.
    turns = [
        {"role": "user", "content": "I work the early shift."},
        {"role": "assistant", "content": "Good morning."},
        {"role": "user", "content": question},
    ]
    followed = client.chat.completions.create(model="bakery", messages=turns, max_tokens=48)
    assert followed.usage.prompt_tokens > completion.usage.prompt_tokens
    vectors = client.embeddings.create(model="any", input=["rye flour", "the rye flour"])
    first, second = (item.embedding for item in vectors.data)
    assert len(first) == 384
    assert sum(a * b for a, b in zip(first, second, strict=True)) > 0.8
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nobody", messages=turns)


def test_an_unsure_answer_goes_to_api_b_with_the_sentences_and_is_logged_as_taught(
    home, instruct_base, endpoint
):
    from thunder_dagster.serving.teacher import TeacherSettings

    home.create_agent("bakery")
    write_task(home.agent_dir("bakery"), "chat")
    index_agent(home, "bakery", sample_texts())
    # Every local answer counts as unsure: API B (a loopback OpenAI server) answers.
    teacher = TeacherSettings(endpoint.base_url, "big-model")
    with TestClient(create_app(settings(home, teacher_threshold=1.01, teacher=teacher))) as client:
        body = ask(client, "On which day is the staff meeting?")
    assert body["fallback"] is True and body["text"] == "the teacher says hello"
    assert body["sources"] and body["model_version"] == "api-b:big-model"
    # API B was given the supporting sentences' passages with the question.
    (request,) = endpoint.seen
    assert "staff meeting" in json.dumps(request)


def test_a_chat_agent_with_an_adapter_answers_through_it_and_a_damaged_one_is_refused(
    bakery, home, instruct_base
):
    import numpy as np

    from thunder_dagster.adapters.files import ARRAYS_NAME, Adapter
    from thunder_dagster.adapters.keras_base import AdapterShape
    from thunder_dagster.adapters.releases import AdapterCard, release_adapter

    question = "Between which temperatures must the walk-in cooler stay?"
    base = ask(bakery, question)
    spec = instruct_base.card.spec
    rng = np.random.default_rng(0)
    arrays = {
        f"{layer}.attn_q": (
            rng.normal(0, 1, (spec.width, 2)).astype(np.float32),
            rng.normal(0, 0.5, (2, spec.heads * spec.head_dim)).astype(np.float32),
        )
        for layer in range(spec.layers)
    }
    card = AdapterCard(instruct_base.card.provenance.sha256, {}, {}, {}, 0.0, {})
    deployments = home.root / "deployments" / "bakery"
    release_adapter(deployments, "bakery", Adapter(AdapterShape(2, 2.0, ("attn_q",)), arrays), card)
    adapted = ask(bakery, question)
    assert (adapted["model_version"], adapted["variant"]) == ("adapter-1", "champion")
    assert adapted["confidence"] != base["confidence"]  # the adapter's matrices changed the logits
    # A damaged challenger is refused with its reason; the champion keeps answering everyone.
    second = release_adapter(
        deployments, "bakery", Adapter(AdapterShape(2, 2.0, ("attn_q",)), arrays), card
    )
    (Path(second.deployment.model_dir) / ARRAYS_NAME).write_bytes(b"junk")
    assert ask(bakery, question)["model_version"] == "adapter-1"
    health = bakery.get("/healthz").json()
    assert any("challenger adapter refused" in p["reason"] for p in health["problems"])
