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
