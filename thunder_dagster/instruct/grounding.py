"""Answers from an agent's documents: the sentences of the best retrieved passages that
support a question, the conversation laid out for the base with them, and the policy for a
question they do not cover. Plain functions of text and vectors (no model, no HTTP).

The base is small (135M parameters): given a few sentences that hold the fact it answers far
better than given whole 512-character passages, and it invents facts when given none. So the
prompt carries only the supporting sentences, best first, and a question whose best sentence
is not similar enough to it gets the documents' refusal instead of an invented answer.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from thunder_dagster.instruct.tokens import Message
from thunder_dagster.retrieval.vectors import ChunkRecord

SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
MIN_SENTENCE_WORDS = 5  # shorter lines are headings and table cells, not facts
# A sentence's rank: its cosine similarity to the question plus this much for the share of the
# question's content words it holds (the encoder alone misses "unsold" for "not sold").
LEXICAL_WEIGHT = 0.3
MAX_NEW_WORDS = 1
NUMBER_WORDS = frozenset(
    "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
    "twenty thirty forty fifty sixty seventy eighty ninety hundred thousand half quarter".split()
)
STOP_WORDS = frozenset(
    "a an and are as at be been by can did do does for from has have how i in is it its of "
    "on or our should so that the their them there they this to was we were what when where "
    "which who why will with you your".split()
)
SYSTEM = (
    "You answer questions about the documents of {agent}. Answer from the facts below in "
    "one or two sentences. If the facts do not answer the question, say that the documents "
    "do not cover it."
)
# One worked exchange before the conversation: the base copies its shape (answer from the
# facts, in a sentence) far more reliably than it follows the instruction alone.
EXAMPLE = (
    Message(
        "user",
        "Facts:\n- The shop opens at seven on weekdays and at eight on Sundays.\n"
        "- Orders are delivered by van.\n\nQuestion: When does the shop open on Sundays?",
    ),
    Message("assistant", "The shop opens at eight on Sundays."),
)
NOT_COVERED = (
    "The documents of {agent} do not cover this: nothing in them is close enough to the "
    "question to answer it."
)


@dataclass(frozen=True)
class GroundingPolicy:
    """Per agent (agent.json's "grounding"): how many supporting sentences the base is
    given, the cosine similarity below which a question counts as not covered, whether such
    a question is refused or answered by the base alone, and whether an answer that says
    what its sentences do not is replaced by the best sentence (bench/answers.py measured
    two sentences and the check as the best of the layouts it tried)."""

    sentences: int = 2
    min_similarity: float = 0.35
    uncovered: Literal["refuse", "answer"] = "refuse"
    checked: bool = True


@dataclass(frozen=True)
class Support:
    """A sentence of a retrieved chunk that supports the answer, and how similar it is to
    the question (cosine of the sentence encoder's vectors)."""

    chunk: ChunkRecord
    sentence: str
    similarity: float


def sentences(text: str) -> list[str]:
    return [part.strip() for part in SENTENCE_END.split(text) if part.strip()]


def supporting(
    question_text: str,
    question: np.ndarray,
    chunks: list[ChunkRecord],
    encode_many: Callable[[list[str]], np.ndarray],
    policy: GroundingPolicy,
) -> list[Support]:
    """The policy's number of sentences from `chunks` most similar to the question, most
    similar first; none when even the best is below the policy's similarity."""
    candidates: dict[str, ChunkRecord] = {}
    for chunk in chunks:
        for sentence in sentences(chunk.text):
            if len(sentence.split()) >= MIN_SENTENCE_WORDS:
                candidates.setdefault(sentence, chunk)  # overlapping chunks repeat sentences
    if not candidates:
        return []
    texts = list(candidates)
    vectors = _unit(np.asarray(encode_many(texts), dtype=np.float32))
    similarities = vectors @ _unit(np.asarray(question, dtype=np.float32))
    words = content_words(question_text)
    shared = np.array([len(words & content_words(text)) / max(len(words), 1) for text in texts])
    ranked = similarities + LEXICAL_WEIGHT * shared
    order = np.argsort(-ranked, kind="stable")[: policy.sentences]
    if similarities.max() < policy.min_similarity:
        return []
    return [Support(candidates[texts[i]], texts[i], float(similarities[i])) for i in order]


def grounded_messages(
    agent_id: str, conversation: list[Message], supports: list[Support]
) -> list[Message]:
    """The conversation as the base sees it: a system message with the facts, then the turns
    (a caller's own system message is kept after the facts' instructions)."""
    return messages_with_facts(agent_id, conversation, [support.sentence for support in supports])


def messages_with_facts(
    agent_id: str, conversation: list[Message], facts: list[str]
) -> list[Message]:
    """grounded_messages from the facts' sentences (an adapter's training examples are laid
    out as the server lays out its prompts)."""
    listed = "\n".join(f"- {sentence}" for sentence in facts)
    own = [m.content for m in conversation if m.role == "system"]
    system = "\n\n".join([SYSTEM.format(agent=agent_id), *own])
    turns = [m for m in conversation if m.role != "system"]
    last = turns[-1]
    asked = Message(last.role, f"Facts:\n{listed}\n\nQuestion: {last.content}") if facts else last
    return [Message("system", system), *EXAMPLE, *turns[:-1], asked]


def within_budget(
    messages: list[Message], count: Callable[[list[Message]], int], budget: int
) -> list[Message]:
    """The messages that fit `budget` tokens: the system message and the last user turn
    always, the earliest other turns dropped first."""
    kept = list(messages)
    while count(kept) > budget:
        droppable = [i for i, m in enumerate(kept[:-1]) if m.role != "system"]
        if not droppable:
            break
        del kept[droppable[0]]
    return kept


def unsupported_words(answer: str, question: str, supports: list[Support]) -> set[str]:
    """The answer's content words found neither in the supporting sentences nor in the
    question: what the base added of its own (a wrong number, an invented name)."""
    known = content_words(question) | {w for s in supports for w in content_words(s.sentence)}
    known |= {w.rstrip("s") for w in known}
    return {w for w in content_words(answer) - known if w.rstrip("s") not in known}


def faithful(answer: str, question: str, supports: list[Support]) -> bool:
    """Whether the answer says something from the supports that the question does not, and
    nothing of its own: at most one new word (a connective the stop list lacks), and no new
    number."""
    new = unsupported_words(answer, question, supports)
    if len(new) > MAX_NEW_WORDS or any(w.isdigit() or w in NUMBER_WORDS for w in new):
        return False
    return bool(content_words(answer) - content_words(question) - new)


def quoted(support: Support) -> str:
    """The answer that quotes the best supporting sentence and names its file."""
    return f"{support.chunk.filename} says: \u201c{support.sentence}\u201d"


def not_covered(agent_id: str) -> str:
    return NOT_COVERED.format(agent=agent_id)


def content_words(text: str) -> set[str]:
    return {word for word in re.findall(r"[a-z0-9]+", text.lower()) if word not in STOP_WORDS}


def _unit(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)
