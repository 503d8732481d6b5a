"""What one agent's adaptation trains on and is judged by, from what the agent already has:

- its chunks: each one the teacher wrote a question about is a lesson (question, the chunk,
  the answer); the others are continued pre-training text;
- its users' answers rated 4 or 5 and its teacher's answers where it was unsure, each laid
  out with the chunks it was grounded on (the query log keeps their ids);
- preferences: two answers to the same question that users rated differently, the better
  one chosen (the reward model ranks by the same ratings; the teacher's grades join them
  through the rated answers' scores).

One in HELD_OUT_EVERY chunks and answers, picked by a hash of its key so that every run of
the agent holds out the same ones, is kept from training: the gate's held-out questions and
text.
"""

import hashlib
from collections import defaultdict
from dataclasses import dataclass

from thunder_dagster.adapters.adapt import HeldOut
from thunder_dagster.adapters.examples import (
    Example,
    Lesson,
    Preference,
    answer_example,
    preference,
    text_examples,
)
from thunder_dagster.feedback.records import TrainingExample
from thunder_dagster.instruct.tokens import BaseTokenizer

HELD_OUT_EVERY = 5
WINDOW_TOKENS = 256  # continued pre-training windows of the documents' text


class NothingToLearnError(ValueError):
    """An agent whose documents and answers leave nothing to train an adapter on."""


@dataclass(frozen=True)
class Material:
    train: list[Example]
    preferences: list[Preference]
    held: HeldOut
    counts: dict[str, int]  # "<kind>" and "held_out_<part>": how many examples of each

    def describe(self) -> str:
        return ", ".join(f"{count} {kind}" for kind, count in self.counts.items() if count)


def held_out(key: str) -> bool:
    """Whether the chunk or answer keyed `key` is held out: the same answer on every run."""
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % HELD_OUT_EVERY == 0


def lesson_of(example: TrainingExample, chunks: dict[str, str]) -> Lesson:
    """A logged answer with the texts of the chunks it was given (those still indexed)."""
    sources = tuple(chunks[key] for key in example.sources or () if key in chunks)
    return Lesson(example.prompt, sources, example.response)


def preferences_from(
    tokenizer: BaseTokenizer, agent_id: str, rated: list[tuple[str, str, str, int]]
) -> list[Preference]:
    """For each question with answers rated differently: the best-rated answer chosen over the
    worst-rated one."""
    by_prompt: dict[str, list[tuple[int, str]]] = defaultdict(list)
    for _, prompt, answer, score in rated:
        by_prompt[prompt].append((score, answer))
    pairs = []
    for prompt, answers in by_prompt.items():
        best, worst = max(answers), min(answers)
        if best[0] > worst[0] and best[1] != worst[1]:
            pairs.append(preference(tokenizer, agent_id, Lesson(prompt, (), ""), best[1], worst[1]))
    return pairs


def gather(
    tokenizer: BaseTokenizer,
    agent_id: str,
    chunks: dict[str, str],
    questions: dict[str, Lesson],
    rated: list[TrainingExample],
    taught: list[TrainingExample],
    ratings: list[tuple[str, str, str, int]],
    positions: int,
) -> Material:
    """The agent's training and held-out examples. `chunks` maps chunk ids to their text,
    `questions` chunk ids to the teacher's lesson about them."""
    train: list[Example] = []
    held_questions: list[Example] = []
    held_text: list[Example] = []
    counts: dict[str, int] = defaultdict(int)

    def add(example: Example | None, key: str, part: list[Example]) -> None:
        if example is None:
            return  # longer than the context: left out, as a served prompt would be refused
        if held_out(key):
            part.append(example)
            counts[f"held_out_{'text' if part is held_text else 'questions'}"] += 1
        else:
            train.append(example)
            counts[example.kind] += 1

    for key, text in chunks.items():
        if key in questions:
            add(
                answer_example(tokenizer, agent_id, questions[key], "questions", positions),
                key,
                held_questions,
            )
        else:
            for example in text_examples(tokenizer, [text], min(WINDOW_TOKENS, positions)):
                add(example, key, held_text)
    for kind, logged in (("rated", rated), ("teacher", taught)):
        for example in logged:
            lesson = lesson_of(example, chunks)
            add(
                answer_example(tokenizer, agent_id, lesson, kind, positions),
                example.query_id,
                held_questions,
            )
    if not held_text and not held_questions and len(train) > 1:
        held_text.append(train.pop())  # too few to hash one out: the last is held out
        counts[held_text[0].kind] -= 1
        counts["held_out_text"] += 1
    if not train:
        raise NothingToLearnError(
            f"agent {agent_id!r} has no chunk or rated answer to train an adapter on: upload "
            "documents and ingest them first"
        )
    return Material(
        train=train,
        preferences=preferences_from(tokenizer, agent_id, ratings),
        held=HeldOut(questions=held_questions, text=held_text),
        counts=dict(counts),
    )
