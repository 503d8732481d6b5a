"""Chat and instruction agents answering from their documents through the shared instruct
base: the agent's index finds the passages, instruct/answers.py grounds and answers, an
unsure answer goes to API B when one is configured, and every answer is logged with its
query id like any other. An agent with an adapter answers through the adapted graph with its
adapter's matrices (its challenger's for its A/B share). No FastAPI here: the
OpenAI-compatible routes, the generate route and `thunder generate` all answer through
`DocumentChat`."""

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from thunder_dagster.feedback.records import QueryRecord
from thunder_dagster.instruct.answers import DocumentAnswer, ground, stream_answer
from thunder_dagster.instruct.decoding import ContextTooLongError, Sampling, Step
from thunder_dagster.instruct.grounding import Support
from thunder_dagster.instruct.tokens import Message
from thunder_dagster.serving.errors import Conflict, OverLimit


@dataclass(frozen=True)
class ChatQuestion:
    messages: tuple[Message, ...]
    user_id: str
    sampling: Sampling = field(default_factory=Sampling)


@dataclass(frozen=True)
class ChatAnswer:
    text: str
    sources: tuple[Support, ...]
    query_id: str
    model_version: str
    confidence: float
    fallback: bool  # API B answered instead of the base
    covered: bool  # False: the documents do not cover the question
    quoted: bool  # the base's answer was replaced by its best sentence
    prompt_tokens: int
    completion_tokens: int
    finish_reason: str
    teacher_error: str | None = None


class DocumentChat:
    def __init__(self, answerer):
        self.answerer = answerer
        self.state = answerer.state

    def stream(self, agent_id: str, question: ChatQuestion) -> Iterator[Step | ChatAnswer]:
        """Steps of the answer, then the logged ChatAnswer."""
        from thunder_dagster.tasks.agents import AgentSettingsError, read_grounding

        started = time.perf_counter()
        last = _last_user_turn(question.messages)
        self.answerer.check_limits_of(last.content, question.sampling.max_tokens)
        # The question is encoded once: for the search and for its sentences' similarity.
        self.answerer.refuse_undeployed(agent_id)
        vector = self.state.retrieval.encode(last.content)
        _, hits = self.answerer.search(agent_id, last.content, self.passages, vector)
        model, card = self.state.base.get()
        variant, adapter = self.state.adapters.for_user(
            agent_id, question.user_id, model.spec, lambda v: self.state.splits.share(agent_id, v)
        )
        if adapter is not None:
            model = self.state.base.adapted().with_adapter(adapter.feeds)
        try:
            policy = read_grounding(self.state.settings.home.agent_dir(agent_id))
        except AgentSettingsError as error:
            raise Conflict(str(error)) from None
        retrieval = self.state.retrieval
        try:
            grounded = ground(
                model,
                agent_id,
                list(question.messages),
                vector,
                [hit.chunk for hit in hits],
                retrieval.encode_many,
                policy,
                question.sampling.max_tokens,
            )
        except ContextTooLongError as error:
            raise OverLimit("messages", str(error)) from None
        answer = None
        for item in stream_answer(
            model, agent_id, last.content, grounded, question.sampling, policy
        ):
            if isinstance(item, DocumentAnswer):
                answer = item
            else:
                yield item
        served = (variant, adapter.version if adapter else f"base-{card.provenance.sha256[:12]}")
        yield self._logged(agent_id, question, last, grounded, answer, served, started)

    def answer(self, agent_id: str, question: ChatQuestion) -> ChatAnswer:
        *_, answer = self.stream(agent_id, question)
        return answer

    @property
    def passages(self) -> int:
        # Supporting sentences are picked from more passages than the prompt holds.
        return max(self.state.settings.grounding_passages, 5)

    def _logged(self, agent_id, question, last, grounded, answer, served, started) -> ChatAnswer:
        variant, version = served  # champion or challenger, and the base's or adapter's version
        text, fallback, confidence, teacher_confidence, error = (
            answer.text,
            False,
            answer.confidence,
            None,
            None,
        )
        unsure = answer.covered and confidence < self.state.settings.teacher_threshold
        if unsure and self.state.teacher is not None:
            from thunder_dagster.serving.answering import Question

            asked = Question(last.content, question.user_id, question.sampling.max_tokens)
            chunks = [support.chunk for support in answer.supports]
            external, error = self.answerer.external_answer(asked, chunks)
            if external is not None:
                text, fallback, teacher_confidence = external.text, True, external.confidence
                version = external.model_version
                self.state.metrics.fallbacks.labels(agent_id).inc()
        completion = answer.completion
        record = QueryRecord(
            agent_id=agent_id,
            user_id=question.user_id,
            variant=variant,
            model_version=version,
            prompt=last.content,
            response=text,
            confidence=confidence,
            fallback=fallback,
            latency_ms=(time.perf_counter() - started) * 1000,
            teacher_confidence=teacher_confidence,
            sources=[support.chunk.chunk_id for support in answer.supports] or None,
        )
        self.state.metrics.confidence.labels(agent_id, variant).observe(confidence)
        self.state.metrics.characters.labels(agent_id, variant).inc(len(text))
        return ChatAnswer(
            text=text,
            sources=answer.supports,
            query_id=self.state.writer.submit(record),
            model_version=version,
            confidence=teacher_confidence if fallback else confidence,
            fallback=fallback,
            covered=answer.covered,
            quoted=answer.quoted,
            prompt_tokens=len(grounded.prompt),
            completion_tokens=len(completion.tokens) if completion else 0,
            finish_reason=completion.finish_reason if completion else "stop",
            teacher_error=error,
        )


def _last_user_turn(messages: tuple[Message, ...]) -> Message:
    if not messages or messages[-1].role != "user":
        raise OverLimit("messages", "the last message must be the user's question")
    return messages[-1]
