"""A chat or instruction agent's answer: the supporting sentences of its retrieved chunks,
the conversation laid out with them within the context, and the base's answer; or, when the
documents do not cover the question, the refusal its policy asks for. The server's routes,
`thunder generate` and bench/answers.py answer through `answer_from_documents`."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from thunder_dagster.instruct.decoding import BaseModel, Completion, Sampling, Step
from thunder_dagster.instruct.grounding import (
    GroundingPolicy,
    Support,
    faithful,
    grounded_messages,
    not_covered,
    quoted,
    supporting,
    within_budget,
)
from thunder_dagster.instruct.tokens import Message
from thunder_dagster.retrieval.vectors import ChunkRecord


@dataclass(frozen=True)
class Grounded:
    """What the base is asked: the token ids, and the sentences they hold (empty and
    `covered` False when the documents do not cover the question)."""

    prompt: list[int]
    supports: tuple[Support, ...]
    covered: bool


@dataclass(frozen=True)
class DocumentAnswer:
    text: str
    supports: tuple[Support, ...]
    covered: bool
    completion: Completion | None  # None when the policy refused without asking the base
    quoted: bool = False  # the base's answer said what its sentences do not: quoted instead

    @property
    def confidence(self) -> float:
        return self.completion.confidence if self.completion else 1.0


def ground(
    model: BaseModel,
    agent_id: str,
    conversation: list[Message],
    question_vector: np.ndarray,
    chunks: list[ChunkRecord],
    encode_many: Callable[[list[str]], np.ndarray],
    policy: GroundingPolicy,
    max_tokens: int,
) -> Grounded:
    supports = supporting(conversation[-1].content, question_vector, chunks, encode_many, policy)
    if not supports and policy.uncovered == "refuse":
        return Grounded([], (), covered=False)
    messages = grounded_messages(agent_id, conversation, supports)
    tokenizer = model.tokenizer
    budget = model.positions - max_tokens
    kept = within_budget(messages, lambda ms: len(tokenizer.chat_prompt(ms)), budget)
    return Grounded(tokenizer.chat_prompt(kept), tuple(supports), covered=bool(supports))


def stream_answer(
    model: BaseModel,
    agent_id: str,
    question: str,
    grounded: Grounded,
    sampling: Sampling,
    policy: GroundingPolicy,
) -> Iterator[Step | DocumentAnswer]:
    """Steps of the answer as they come, then the DocumentAnswer. With the policy's check,
    the answer is whole before it is shown: one that says what its sentences do not is
    replaced by the best sentence, quoted with its file."""
    if not grounded.prompt:
        text = not_covered(agent_id)
        yield Step(-1, text, 1.0)
        yield DocumentAnswer(text, (), covered=False, completion=None)
        return
    if not (policy.checked and grounded.supports):
        for item in model.stream(grounded.prompt, sampling):
            if isinstance(item, Completion):
                yield DocumentAnswer(item.text, grounded.supports, grounded.covered, item)
            else:
                yield item
        return
    completion = model.complete(grounded.prompt, sampling)
    supports = list(grounded.supports)
    kept = faithful(completion.text, question, supports[:1])
    text = completion.text if kept else quoted(supports[0])
    yield Step(-1, text, completion.confidence)
    yield DocumentAnswer(text, grounded.supports, True, completion, quoted=not kept)


def answer_from_documents(
    model: BaseModel,
    agent_id: str,
    conversation: list[Message],
    question_vector: np.ndarray,
    chunks: list[ChunkRecord],
    encode_many: Callable[[list[str]], np.ndarray],
    policy: GroundingPolicy,
    sampling: Sampling,
) -> DocumentAnswer:
    grounded = ground(
        model,
        agent_id,
        conversation,
        question_vector,
        chunks,
        encode_many,
        policy,
        sampling.max_tokens,
    )
    question = conversation[-1].content
    *_, answer = stream_answer(model, agent_id, question, grounded, sampling, policy)
    return answer
