"""The answering policy, with no HTTP in it: which variant answers a user (champion,
challenger model, or the champion answering best-of-n under test), grounding in retrieved
passages, best-of ranking by the reward model within a latency budget, the local teacher and
API B when the answer is unsure, the response cache, and the query record. The server's routes
and `thunder generate` / `thunder classify` answer through it, so both answer alike.
"""

import contextlib
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from thunder_dagster.feedback.records import QueryRecord, cache_key
from thunder_dagster.home import AGENT_ID_PATTERN
from thunder_dagster.retrieval.vectors import ChunkRecord
from thunder_dagster.serving.classifying import Classifying
from thunder_dagster.serving.errors import (
    OverLimit,
    Undeployed,
    UnknownAgent,
    WrongTask,
)
from thunder_dagster.serving.generation import LoadedModel, generate
from thunder_dagster.serving.models import AgentModels, variant_for
from thunder_dagster.serving.state import ServingState
from thunder_dagster.tasks.registry import task_kind


@dataclass(frozen=True)
class Question:
    prompt: str
    user_id: str
    max_tokens: int = 128
    temperature: float = 0.8
    grounded: bool = False
    best_of: int | None = None  # None: the agent's adopted best-of-n, else 1
    seed: int | None = None  # the sampling's seed, for a repeatable answer (the CLI's --seed)


@dataclass(frozen=True)
class Variant:
    """Who answers one user: the model, the arm of the A/B split it is, the version the log
    records, and how many answers it ranks (a best-of-n policy under test, if it is one)."""

    name: Literal["champion", "challenger"]
    model: LoadedModel
    logged_as: str
    best_of: int | None = None


@dataclass(frozen=True)
class Ranked:
    """How an answer was chosen: of how many candidates, its reward score, and why fewer were
    ranked than asked for."""

    candidates: int = 1
    reward: float | None = None
    error: str | None = None


@dataclass(frozen=True)
class Answer:
    text: str
    confidence: float | None
    model_version: str
    variant: str
    query_id: str
    fallback: bool
    sources: tuple[ChunkRecord, ...] = ()
    teacher_error: str | None = None
    ranked: Ranked = field(default_factory=Ranked)


class Answerer(Classifying):
    def __init__(self, state: ServingState):
        self.state = state
        self.settings = state.settings
        self.metrics = state.metrics

    def models(self, agent_id: str) -> AgentModels:
        """The agent's loaded models; UnknownAgent or Undeployed when it has no champion."""
        pool = self.state.pool
        models = pool.get(agent_id) if AGENT_ID_PATTERN.fullmatch(agent_id) else None
        self.refuse_undeployed(agent_id)
        if models is None or models.champion is None:
            known = sorted(name for name, m in pool.agents.items() if m.champion is not None)
            raise UnknownAgent(
                f"unknown agent {agent_id!r}: no deployed model; agents served: "
                f"{', '.join(known) or 'none'}"
            )
        return models

    def refuse_undeployed(self, agent_id: str) -> None:
        undeployed = self.state.pool.undeployed.get(agent_id)
        if undeployed is not None:
            raise Undeployed(
                f"agent {agent_id!r} is undeployed (since {undeployed.at}: {undeployed.reason}); "
                "an operator serves it again with `thunder redeploy`"
            )

    def check_limits(self, question: Question) -> None:
        self.check_limits_of(question.prompt, question.max_tokens)
        budget = self.settings.max_work_tokens
        if question.best_of and question.best_of * question.max_tokens > budget:
            raise OverLimit(
                "best_of",
                f"best_of {question.best_of} x max_tokens {question.max_tokens} is "
                f"{question.best_of * question.max_tokens} tokens, over this server's {budget} "
                "(THUNDER_MAX_WORK_TOKENS): ask for fewer answers or fewer tokens",
            )

    def check_limits_of(self, prompt: str, max_tokens: int, field: str = "prompt") -> None:
        if len(prompt) > self.settings.max_prompt_chars:
            raise OverLimit(
                field,
                f"{len(prompt)} characters, the limit is {self.settings.max_prompt_chars}; "
                "send a shorter prompt",
            )
        if max_tokens > self.settings.max_tokens:
            raise OverLimit("max_tokens", f"{max_tokens}, the limit is {self.settings.max_tokens}")

    def is_instruct(self, agent_id: str) -> bool:
        """Whether the agent's task answers through the instruct base (chat, instruction)."""
        from thunder_dagster.tasks.agents import AgentSettingsError, read_task

        if not AGENT_ID_PATTERN.fullmatch(agent_id):
            return False
        try:
            task = read_task(self.settings.home.agent_dir(agent_id))
        except AgentSettingsError:
            return False
        return task_kind(task).model == "instruct"

    def documents_answer(self, agent_id: str, question: Question) -> Answer:
        """A chat or instruction agent's answer to one prompt, as the generate route gives
        it: the base's answer from the agent's documents, with its sources."""
        from thunder_dagster.instruct.decoding import Sampling
        from thunder_dagster.instruct.tokens import Message
        from thunder_dagster.serving.conversations import ChatQuestion, DocumentChat

        self.refuse_undeployed(agent_id)
        sampling = Sampling(question.max_tokens, question.temperature, seed=question.seed)
        asked = ChatQuestion((Message("user", question.prompt),), question.user_id, sampling)
        chat = DocumentChat(self).answer(agent_id, asked)
        return Answer(
            text=chat.text,
            confidence=chat.confidence,
            model_version=chat.model_version,
            variant="champion",
            query_id=chat.query_id,
            fallback=chat.fallback,
            sources=tuple(support.chunk for support in chat.sources),
            teacher_error=chat.teacher_error,
        )

    def variant(self, agent_id: str, models: AgentModels, user: str) -> Variant:
        """The user's arm of the agent's A/B split: the challenger model for its share of
        users, or, without one, the champion answering best-of-n in a running test of that."""
        champion, challenger = models.champion, models.challenger
        splits = self.state.splits
        if challenger is not None:
            share = splits.share(agent_id, challenger.deployment.version)
            if variant_for(agent_id, user, share) == "challenger":
                return Variant("challenger", challenger, challenger.deployment.version)
            return Variant("champion", champion, champion.deployment.version)
        policy = splits.best_of_test(agent_id, champion.deployment.version)
        if policy is not None and variant_for(agent_id, user, policy.split) == "challenger":
            return Variant("challenger", champion, policy.version, policy.best_of)
        return Variant("champion", champion, champion.deployment.version)

    def generate(self, agent_id: str, question: Question) -> Answer:
        """The answer for the question's user, logged; its query id rates it."""
        started = time.perf_counter()
        self.check_limits(question)
        if self.is_instruct(agent_id):
            return self.documents_answer(agent_id, question)
        models = self.models(agent_id)
        kind = task_kind(models.champion.task)
        if kind.endpoint != "generate":
            raise WrongTask(
                f"agent {agent_id!r} is a {kind.name} agent (labels: "
                f"{', '.join(models.champion.labels)}): it answers "
                f"POST /v1/agents/{agent_id}/{kind.endpoint}, not generate",
                kind.name,
                kind.endpoint,
            )
        variant = self.variant(agent_id, models, question.user_id)
        best_of = (
            variant.best_of or question.best_of or self.state.rewards.default_best_of(agent_id)
        )
        # An adopted best-of-n stays within the work budget too.
        best_of = min(best_of, max(1, self.settings.max_work_tokens // question.max_tokens))
        sources = self.passages(agent_id, question.prompt) if question.grounded else []
        generating = time.perf_counter()
        if best_of > 1:
            text, confidence, ranked = self.best_answer(
                agent_id, variant.model, question, sources, best_of
            )
        else:
            (text, confidence), ranked = self.answer(variant.model, question, sources), Ranked()
        labels = (agent_id, variant.name)
        self.metrics.model_seconds.labels(*labels).observe(time.perf_counter() - generating)
        self.metrics.confidence.labels(*labels).observe(confidence)
        self.metrics.characters.labels(*labels).inc(len(text))
        taught = self.taught(agent_id, models, question, sources, confidence)
        # The log keeps the local model's confidence, the daily rules' input, also when the
        # teacher answers; the teacher's goes in its own column (distillation selects by it).
        record = QueryRecord(
            agent_id=agent_id,
            user_id=question.user_id,
            variant=variant.name,
            model_version=taught.version or variant.logged_as,
            prompt=question.prompt,
            response=taught.text if taught.text is not None else text,
            confidence=confidence,
            fallback=taught.text is not None,
            latency_ms=(time.perf_counter() - started) * 1000,
            teacher_confidence=taught.confidence,
            sources=[chunk.chunk_id for chunk in sources] if sources else None,
        )
        return Answer(
            text=record.response,
            confidence=taught.confidence if taught.text is not None else confidence,
            model_version=record.model_version,
            variant=variant.name,
            query_id=self.state.writer.submit(record),
            fallback=record.fallback,
            sources=tuple(sources),
            teacher_error=taught.error,
            ranked=ranked,
        )

    def taught(self, agent_id, models, question, sources, confidence) -> "Taught":
        """The teacher's answer when the local one is unsure: the agent's local teacher, else
        API B; nothing when the answer is sure enough or no teacher can answer."""
        if confidence >= self.settings.teacher_threshold:
            return Taught()
        if models.teacher is not None:
            text, taught_confidence = self.answer(models.teacher, question, sources)
            self.metrics.fallbacks.labels(agent_id).inc()
            return Taught(text, taught_confidence, models.teacher.deployment.version)
        if self.state.teacher is None:
            return Taught()
        external, error = self.external_answer(question, sources)
        if external is None:
            return Taught(error=error)
        self.metrics.fallbacks.labels(agent_id).inc()
        return Taught(
            external.text[: question.max_tokens], external.confidence, external.model_version
        )

    def best_answer(self, agent_id: str, model, question: Question, passages, wanted: int):
        """(text, confidence, Ranked): up to `wanted` sampled answers, the first always and the
        others while the latency budget lasts, and the one the reward model scores highest.
        Without a reward model, or at temperature 0, one answer and the reason."""
        from thunder_dagster.retrieval.encoder import EncoderUnavailableError
        from thunder_dagster.serving.rewards import RewardUnavailableError

        if question.temperature == 0:
            text, confidence = self.answer(model, question, passages)
            return text, confidence, Ranked(error="at temperature 0 every sample is the same")
        try:
            reward = self.state.rewards.get(agent_id)
        except RewardUnavailableError as error:
            text, confidence = self.answer(model, question, passages)
            return text, confidence, Ranked(error=str(error))
        context = _context(passages)
        budget = self.settings.best_of_seconds
        started = time.perf_counter()
        drawn = []
        while len(drawn) < wanted and not (drawn and time.perf_counter() - started > budget):
            drawn.append(
                generate(
                    model,
                    question.prompt,
                    question.max_tokens,
                    question.temperature,
                    context=context,
                )
            )
        try:
            vectors = self.state.retrieval.encode_many([question.prompt, *(g.text for g in drawn)])
        except EncoderUnavailableError as error:
            return drawn[0].text, drawn[0].confidence, Ranked(error=str(error))
        scores = reward.scores(vectors[0], vectors[1:])
        best = max(range(len(drawn)), key=lambda number: scores[number])
        short = (
            f"{len(drawn)} of {wanted} answers within the {budget:g} s budget"
            if len(drawn) < wanted
            else None
        )
        ranked = Ranked(candidates=len(drawn), reward=float(scores[best]), error=short)
        return drawn[best].text, drawn[best].confidence, ranked

    def external_answer(self, question: Question, passages) -> tuple:
        """API B's answer and None, or None and why it could not answer (the local answer then
        stands). Grounded requests give it the passages as context, best first."""
        from thunder_dagster.serving.teacher import CircuitOpenError, TeacherUnavailableError

        prompt = question.prompt
        if passages:
            context = "\n\n".join(chunk.text for chunk in passages)
            prompt = f"Passages:\n{context}\n\nText to continue:\n{question.prompt}"
        try:
            taught = self.state.teacher.answer(prompt, question.max_tokens, question.temperature)
        except TeacherUnavailableError as error:
            outcome = "circuit_open" if isinstance(error, CircuitOpenError) else "failed"
            self.metrics.teacher_calls.labels(outcome).inc()
            return None, str(error)
        self.metrics.teacher_calls.labels("answered").inc()
        return taught, None

    def answer(self, model: LoadedModel, question: Question, passages=()) -> tuple[str, float]:
        """Greedy answers are cached per model version and passages; sampled ones never are.
        Without the store (not open yet, or down) an answer is generated, not looked up. The
        passages go through the model before the prompt, best last, next to it."""
        store = self.state.writer.store() if question.temperature == 0 else None
        grounded = [chunk.chunk_id for chunk in passages]
        prompt_key = f"{question.prompt}\0{question.max_tokens}\0{','.join(grounded)}"
        deployment = model.deployment
        key = cache_key(deployment.agent_id, deployment.version, prompt_key)
        if store is not None:
            try:
                cached = store.cached_response(key)
            except Exception:  # the store went down: the cache is an optimisation only
                store, cached = None, None
            if cached is not None:
                return cached.response, cached.confidence
        generation = generate(
            model,
            question.prompt,
            question.max_tokens,
            question.temperature,
            seed=question.seed,
            context=_context(passages),
        )
        if store is not None:
            with contextlib.suppress(Exception):
                store.cache_response(
                    deployment.agent_id,
                    deployment.version,
                    prompt_key,
                    generation.text,
                    generation.confidence,
                    timedelta(seconds=self.settings.cache_ttl_seconds),
                )
        return generation.text, generation.confidence

    def passages(self, agent_id: str, prompt: str) -> list[ChunkRecord]:
        _, hits = self.search(agent_id, prompt, self.settings.grounding_passages)
        return [hit.chunk for hit in hits]

    def search(self, agent_id: str, query: str, k: int, vector=None) -> tuple:
        """The agent's index and its top `k` hits for `query` (its `vector`, when the caller
        has encoded it already); UnknownAgent with why when the agent has no index."""
        self.refuse_undeployed(agent_id)
        retrieval = self.state.retrieval
        index = retrieval.index(agent_id) if AGENT_ID_PATTERN.fullmatch(agent_id) else None
        if index is None:
            raise UnknownAgent(
                f"agent {agent_id!r} has no retrieval index: {retrieval.why_not(agent_id)}"
            )
        started = time.perf_counter()
        vector = retrieval.encode(query) if vector is None else vector
        hits = index.search(query, vector, k)
        self.metrics.search_seconds.labels(agent_id).observe(time.perf_counter() - started)
        return index, hits


@dataclass(frozen=True)
class Taught:
    """A teacher's answer that replaces the local one (text None: it does not), or why API B
    could not answer."""

    text: str | None = None
    confidence: float | None = None
    version: str | None = None
    error: str | None = None


def _context(passages) -> str:
    return "".join(f"{chunk.text}\n\n" for chunk in reversed(list(passages)))
