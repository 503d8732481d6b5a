"""What an adapter learns from, as token sequences with the tokens it learns marked:

- `documents`: the agent's chunks as continued pre-training (every token learnt), when no
  teacher has written questions about them;
- `questions`: question-and-answer pairs about each chunk that the external teacher wrote
  (stored by the chunk's hash in a question bank, so a rerun never asks again);
- `rated`: answers users rated 4 or 5 (seed 004's fine-tune rule);
- `teacher`: the teacher's answers where the local model was unsure (the distillation rule);
- preferences: two answers to one prompt, the better first (direct preference optimisation).

An answer is laid out as the server lays out its prompt (instruct/grounding.py): the facts
from the chunks it was given, the question, then the answer, of which only the answer and its
end-of-turn marker are learnt.
"""

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from thunder_dagster.files import write_atomically
from thunder_dagster.instruct.grounding import (
    MIN_SENTENCE_WORDS,
    content_words,
    messages_with_facts,
    sentences,
)
from thunder_dagster.instruct.tokens import BaseTokenizer, Message

KINDS = ("documents", "questions", "rated", "teacher")
FACTS = 2  # supporting sentences per answer, as the grounding policy's default gives
QUESTION_PROMPT = (
    "Write one question a reader could ask about the passage below, and its answer in one "
    "sentence taken from the passage. Reply exactly as:\nQ: <question>\nA: <answer>\n\n"
    "Passage:\n{passage}"
)
REPLY = re.compile(r"Q:\s*(?P<question>.+?)\s*\n\s*A:\s*(?P<answer>.+)", re.S)


@dataclass(frozen=True)
class Example:
    ids: tuple[int, ...]
    learned: tuple[bool, ...]  # per token: whether it is a target (predicted from those before)
    kind: str

    @property
    def targets(self) -> int:
        return sum(self.learned[1:])


@dataclass(frozen=True)
class Preference:
    prompt: tuple[int, ...]
    chosen: tuple[int, ...]  # answer tokens, end marker included
    rejected: tuple[int, ...]


@dataclass(frozen=True)
class Lesson:
    """An answer to learn: the question, the chunks' texts it was grounded on, the answer."""

    question: str
    sources: tuple[str, ...]
    answer: str


def facts_for(question: str, texts: Iterable[str], count: int = FACTS) -> list[str]:
    """The `count` sentences of `texts` that share most content words with the question."""
    words = content_words(question)
    found = {
        sentence: len(words & content_words(sentence))
        for text in texts
        for sentence in sentences(text)
        if len(sentence.split()) >= MIN_SENTENCE_WORDS
    }
    ranked = sorted(found, key=lambda sentence: -found[sentence])
    return [sentence for sentence in ranked[:count] if found[sentence] > 0]


def text_examples(tokenizer: BaseTokenizer, texts: Iterable[str], length: int) -> list[Example]:
    """Continued pre-training: each text in windows of at most `length` tokens."""
    examples = []
    for text in texts:
        ids = tokenizer.encode(text)
        for start in range(0, max(len(ids) - 1, 1), length):
            window = tuple(ids[start : start + length])
            if len(window) > 1:
                examples.append(Example(window, (True,) * len(window), "documents"))
    return examples


def prompt_ids(tokenizer: BaseTokenizer, agent_id: str, lesson: Lesson) -> list[int]:
    facts = facts_for(lesson.question, lesson.sources)
    messages = messages_with_facts(agent_id, [Message("user", lesson.question)], facts)
    return tokenizer.chat_prompt(messages)


def answer_ids(tokenizer: BaseTokenizer, answer: str) -> list[int]:
    return [*tokenizer.encode(answer.strip()), tokenizer.end_id]


def answer_example(
    tokenizer: BaseTokenizer, agent_id: str, lesson: Lesson, kind: str, length: int
) -> Example | None:
    """The lesson laid out as a served prompt and its answer; None when it does not fit."""
    prompt, answer = prompt_ids(tokenizer, agent_id, lesson), answer_ids(tokenizer, lesson.answer)
    if len(prompt) + len(answer) > length or not lesson.answer.strip():
        return None
    ids = (*prompt, *answer)
    return Example(ids, (False,) * len(prompt) + (True,) * len(answer), kind)


def preference(
    tokenizer: BaseTokenizer, agent_id: str, lesson: Lesson, chosen: str, rejected: str
) -> Preference:
    return Preference(
        tuple(prompt_ids(tokenizer, agent_id, lesson)),
        tuple(answer_ids(tokenizer, chosen)),
        tuple(answer_ids(tokenizer, rejected)),
    )


class QuestionBank:
    """The teacher's questions about an agent's chunks, one JSON line per chunk hash, kept
    beside the agent's models: a chunk the bank holds is never sent to the teacher again."""

    def __init__(self, path: Path):
        self.path = path

    def load(self) -> dict[str, Lesson]:
        lessons = {}
        if not self.path.is_file():
            return lessons
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
                lessons[row["chunk"]] = Lesson(row["question"], (row["passage"],), row["answer"])
            except (ValueError, KeyError, TypeError):
                continue  # a damaged line is asked again, not fatal
        return lessons

    def fill(self, teacher, chunks: dict[str, str], limit: int) -> tuple[dict[str, Lesson], int]:
        """The lessons for `chunks` (hash -> text), asking the teacher for at most `limit`
        chunks the bank lacks; (lessons, how many were asked)."""
        from thunder_dagster.serving.teacher import TeacherUnavailableError

        lessons, asked = self.load(), 0
        for key, passage in chunks.items():
            if key in lessons or asked >= limit:
                continue
            asked += 1
            try:
                reply = teacher.answer(QUESTION_PROMPT.format(passage=passage), 96, 0.0).text
            except TeacherUnavailableError:
                break  # the rest wait for the next run
            match = REPLY.search(reply)
            if match is None:
                continue
            lessons[key] = Lesson(match["question"].strip(), (passage,), match["answer"].strip())
        rows = [
            json.dumps(
                {
                    "chunk": key,
                    "question": lesson.question,
                    "passage": lesson.sources[0],
                    "answer": lesson.answer,
                }
            )
            for key, lesson in lessons.items()
        ]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(self.path, ("\n".join(rows) + "\n").encode())
        return {key: lessons[key] for key in chunks if key in lessons}, asked
