"""What an adapter learns from, laid out as the server lays out its prompts: answers learn
only their own tokens, facts come from the sources' sentences that share the question's words,
documents are windows of tokens, and the teacher's questions about the chunks are asked once
(against an OpenAI-compatible server on loopback: no real API is reachable here)."""

import pytest

from thunder_dagster.adapters.examples import (
    Lesson,
    QuestionBank,
    answer_example,
    facts_for,
    text_examples,
)
from thunder_dagster.instruct.base import BaseFile
from thunder_dagster.instruct.tokens import BaseTokenizer
from thunder_dagster.serving.teacher import ExternalTeacher, TeacherSettings

PASSAGE = (
    "The bakery on Mill Street opens at nine on Sundays. Its rye bread is baked with flour "
    "from the Hollow Farm mill. Deliveries reach the cafe before seven every weekday."
)


@pytest.fixture(scope="module")
def tokenizer():
    return BaseTokenizer(BaseFile())


def test_facts_are_the_sources_sentences_that_share_most_of_the_questions_words():
    facts = facts_for("Where does the rye flour come from?", [PASSAGE])
    assert facts[0] == "Its rye bread is baked with flour from the Hollow Farm mill."
    assert facts_for("What colour is the sky?", [PASSAGE]) == []


def test_an_answer_is_a_served_prompt_whose_answer_and_end_marker_alone_are_learnt(tokenizer):
    lesson = Lesson("When does the bakery open on Sundays?", (PASSAGE,), "At nine.")
    example = answer_example(tokenizer, "acme", lesson, "rated", 512)
    learnt = [token for token, on in zip(example.ids, example.learned, strict=True) if on]
    assert learnt == [*tokenizer.encode("At nine."), tokenizer.end_id]
    prompt = tokenizer.decode(list(example.ids[: example.learned.index(True)]))
    assert "- The bakery on Mill Street opens at nine on Sundays." in prompt
    assert "Question: When does the bakery open on Sundays?" in prompt
    assert answer_example(tokenizer, "acme", lesson, "rated", 20) is None  # too long to fit


def test_documents_are_learnt_whole_in_windows(tokenizer):
    (example,) = text_examples(tokenizer, [PASSAGE], 1024)
    assert example.ids == tuple(tokenizer.encode(PASSAGE)) and all(example.learned)
    windows = text_examples(tokenizer, [PASSAGE], 16)
    assert [len(w.ids) for w in windows[:-1]] == [16] * (len(windows) - 1)
    assert sum(len(w.ids) for w in windows) == len(example.ids)


def test_the_teachers_questions_are_asked_once_per_chunk_and_kept(endpoint, tmp_path):
    def reply(body):
        passage = body["messages"][-1]["content"].split("Passage:\n", 1)[1]
        return f"Q: What does the passage begin with?\nA: {passage.split('.')[0]}."

    endpoint.reply = reply
    teacher = ExternalTeacher(TeacherSettings(endpoint.base_url, "big-model", "sk-test"))
    bank = QuestionBank(tmp_path / "questions.jsonl")
    chunks = {"h1": PASSAGE, "h2": "Rye needs a long proof. It rests overnight in the cold."}
    lessons, asked = bank.fill(teacher, chunks, limit=10)
    assert asked == 2 and endpoint.calls == 2
    assert lessons["h2"] == Lesson(
        "What does the passage begin with?", (chunks["h2"],), "Rye needs a long proof."
    )
    again, asked = QuestionBank(tmp_path / "questions.jsonl").fill(teacher, chunks, limit=10)
    assert again == lessons and asked == 0 and endpoint.calls == 2
    more, asked = bank.fill(teacher, {**chunks, "h3": "A third chunk. It is short."}, limit=0)
    assert asked == 0 and "h3" not in more  # over the run's limit: asked on a later run


def test_an_agents_material_holds_out_the_same_share_every_run_and_grounds_logged_answers(
    tokenizer,
):
    from thunder_dagster.adapters.material import NothingToLearnError, gather, held_out
    from thunder_dagster.feedback.records import TrainingExample

    chunks = {f"doc-{i:05d}": f"{PASSAGE} Note {i} of the bakery's day." for i in range(20)}
    question = Lesson("When does the bakery open on Sundays?", (PASSAGE,), "At nine.")
    rated = [
        TrainingExample(f"q{i}", "When do deliveries arrive?", "Before seven.", ["doc-00001"])
        for i in range(10)
    ]
    taught = [TrainingExample("t1", "Where is the bakery?", "On Mill Street.", ["gone-00000"])]
    ratings = [("r1", "Is rye sold?", "Yes, daily.", 5), ("r2", "Is rye sold?", "No idea.", 1)]
    material = gather(
        tokenizer, "acme", chunks, {"doc-00003": question}, rated, taught, ratings, 512
    )
    again = gather(tokenizer, "acme", chunks, {"doc-00003": question}, rated, taught, ratings, 512)
    assert material == again
    keys = [*chunks, *(example.query_id for example in [*rated, *taught])]
    held = sum(held_out(key) for key in keys)
    assert 0 < held < len(keys) / 2  # about one in five
    counts = material.counts
    assert counts.get("held_out_text", 0) + counts.get("held_out_questions", 0) == held
    assert sum(counts.get(kind, 0) for kind in ("documents", "questions", "rated", "teacher")) == (
        len(material.train)
    )
    # A rated answer is laid out with its chunk's facts; a chunk since removed is left out.
    rated_example = next(
        e for e in [*material.train, *material.held.questions] if e.kind == "rated"
    )
    facts = "Deliveries reach the cafe before seven every weekday."
    assert facts in tokenizer.decode(list(rated_example.ids))
    taught_example = next(
        e for e in [*material.train, *material.held.questions] if e.kind == "teacher"
    )
    assert facts not in tokenizer.decode(list(taught_example.ids))
    (pair,) = material.preferences
    assert pair.chosen[:-1] == tuple(tokenizer.encode("Yes, daily."))
    with pytest.raises(NothingToLearnError, match="'empty'"):
        gather(tokenizer, "empty", {}, {}, [], [], [], 512)
