"""The query log's records as plain values, importable without SQLAlchemy."""

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

POSITIVE_SCORE = 4
HIGH_CONFIDENCE = 0.8
# Ratings count people, not rows: of one user's ratings, the first 5 of a day count toward the
# daily rules (the fine-tune rule's 50 positive ratings need at least 10 people) and the first
# 20 of a variant toward an A/B test.
RATINGS_PER_USER = 5
AB_RATINGS_PER_USER = 20
# Of one user's corrected labels, the latest 50 become labelled examples: one key cannot
# relabel an agent alone.
LABELS_PER_USER = 50
# The model_version of an answer the external teacher (API B) gave: this, then its model.
EXTERNAL_TEACHER_PREFIX = "api-b:"


@dataclass(frozen=True)
class QueryRecord:
    """One answer as the server logs it."""

    agent_id: str
    user_id: str
    variant: str
    model_version: str
    prompt: str
    response: str
    confidence: float  # the local model's (champion or challenger), also when the teacher answered
    fallback: bool
    latency_ms: float
    teacher_confidence: float | None = None  # the teacher's, when it answered instead
    # The chunk ids of the retrieved passages that conditioned a grounded answer, best first.
    sources: list[str] | None = None


@dataclass(frozen=True)
class QueryStats:
    """Seed 004's statistics over one window of an agent's query log."""

    total_queries: int
    avg_confidence: float
    teacher_fallbacks: int
    high_confidence_responses: int
    user_feedback_available: int
    positive_feedback: int
    raters: int = 0  # the distinct users whose ratings these counts hold
    # Ratings of a classifier's answers that give another label (each user's first
    # RATINGS_PER_USER of the window), and the distinct users who gave them.
    corrections: int = 0
    correctors: int = 0

    @property
    def fallback_rate(self) -> float:
        return self.teacher_fallbacks / self.total_queries if self.total_queries else 0.0

    @property
    def feedback_rate(self) -> float:
        return self.user_feedback_available / self.total_queries if self.total_queries else 0.0

    def as_dict(self) -> dict:
        return {
            "total_queries": self.total_queries,
            "avg_confidence": self.avg_confidence,
            "teacher_fallbacks": self.teacher_fallbacks,
            "high_confidence_responses": self.high_confidence_responses,
            "user_feedback_available": self.user_feedback_available,
            "positive_feedback": self.positive_feedback,
            "raters": self.raters,
            "corrections": self.corrections,
            "correctors": self.correctors,
            "fallback_rate": self.fallback_rate,
            "feedback_rate": self.feedback_rate,
        }


@dataclass(frozen=True)
class Correction:
    """A user's label for a classifier's answer: the text classified, the label it gave, the
    label the user says it should have given, and the answer's query id (its trace)."""

    query_id: str
    text: str
    answered: str
    label: str
    user_id: str
    at: datetime


@dataclass(frozen=True)
class TrainingExample:
    query_id: str
    prompt: str
    response: str
    sources: list[str] | None = None  # the chunk ids the answer was grounded on


@dataclass(frozen=True)
class VariantOutcome:
    """The feedback one variant of an A/B test received: each rated answer's score and whether
    it was right (`right`, in the same order; None: a score of 4 or 5 is right)."""

    variant: str
    model_version: str
    queries: int
    scores: tuple[int, ...]
    right: tuple[bool, ...] | None = None

    def rights(self) -> tuple[bool, ...]:
        if self.right is not None:
            return self.right
        return tuple(score >= POSITIVE_SCORE for score in self.scores)


def answer_was_right(score: int, label: str | None, response: str) -> bool:
    """Whether a rated answer was right: a classifier's answer whose user gave the correct
    label is right when it is that label; any other answer when its user rated it 4 or 5."""
    return label == response if label is not None else score >= POSITIVE_SCORE


class UnknownQueryError(LookupError):
    pass


def new_query_id() -> str:
    return uuid.uuid4().hex


def cache_key(agent_id: str, model_version: str, prompt_key: str) -> str:
    return hashlib.sha256(f"{agent_id}\0{model_version}\0{prompt_key}".encode()).hexdigest()
