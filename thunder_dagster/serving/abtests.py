"""What the admin API takes and answers about A/B tests (feedback/experiments.py holds them)."""

from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

from fastapi import Path as FastApiPath
from pydantic import BaseModel, ConfigDict, Field, model_validator

from thunder_dagster.serving.api.schemas import numbers_not_booleans

if TYPE_CHECKING:
    from thunder_dagster.feedback.abtest import AbResult
    from thunder_dagster.feedback.experiments import AbTest

AbTestId = Annotated[str, FastApiPath(pattern=r"^[0-9a-f]{12}$", description="an A/B test's id")]


class AbTestRequest(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)
    _numbers = model_validator(mode="before")(numbers_not_booleans)

    split: float = Field(gt=0, lt=1, description="share of users the challenger answers")
    min_sample: int = Field(
        default=1000, ge=1, le=10_000_000, description="rated answers each variant needs"
    )
    confidence: float = Field(
        default=0.95, ge=0.5, lt=1, description="confidence of the decision (1 - alpha)"
    )
    max_days: int = Field(
        default=14,
        ge=1,
        le=365,
        description="days the test may run undecided; then it ends inconclusive and the "
        "challenger is retired",
    )
    best_of: int | None = Field(
        default=None,
        ge=2,
        le=8,
        description="test a serving policy instead of the challenger model: the champion "
        "answering best-of-n, ranked by the agent's reward model, against single answers",
    )


class StopRequest(BaseModel):
    reason: str = Field(
        default="stopped early", min_length=1, max_length=500, description="kept with the test"
    )


class AbTestItem(BaseModel):
    id: str
    agent_id: str
    champion_version: str
    challenger_version: str
    split: float
    min_sample: int
    confidence: float
    max_days: int = Field(description="days it may run undecided before it ends inconclusive")
    status: str = Field(
        description="running, stopped, promoted, retired, inconclusive (out of days "
        "undecided) or superseded (a newer challenger replaced its own)"
    )
    created_at: str = Field(description="UTC, ISO 8601")
    created_by: str
    ended_at: str | None
    ended_by: str | None
    reason: str | None


class VariantItem(BaseModel):
    variant: str
    model_version: str
    answers: int
    rated: int
    positive: int = Field(
        description="rated answers that were right: rated 4 or 5, or, a classifier's answer "
        "its user gave a label, that label"
    )
    positive_rate: float = Field(description="the measure: positive rate, or accuracy")
    positive_rate_ci: tuple[float, float] = Field(description="Wilson interval, 95%")
    mean_score: float
    mean_score_ci: tuple[float, float]


class AbTestResults(BaseModel):
    test: AbTestItem
    champion: VariantItem
    challenger: VariantItem
    measure: str = Field(
        description="what positive_rate is: 'positive rate' (a generator's answers rated 4 or "
        "5) or 'accuracy' (a classifier's answers, against the labels users gave)"
    )
    positive_rate_p_value: float = Field(description="two-proportion z-test, two-sided")
    mean_score_p_value: float = Field(description="Welch's t-test, two-sided")
    verdict: str = Field(
        description="what the evaluation would decide now: continue (too few rated answers), "
        "promote or retire"
    )
    reason: str


def ab_test_item(test: "AbTest") -> AbTestItem:
    ended = test.ended_at.isoformat() if test.ended_at else None
    return AbTestItem(
        **(asdict(test) | {"created_at": test.created_at.isoformat(), "ended_at": ended})
    )


def ab_test_results(test: "AbTest", result: "AbResult") -> AbTestResults:
    return AbTestResults(
        test=ab_test_item(test),
        champion=VariantItem(**asdict(result.champion)),
        challenger=VariantItem(**asdict(result.challenger)),
        measure=result.measure,
        positive_rate_p_value=result.positive_rate_p_value,
        mean_score_p_value=result.mean_score_p_value,
        verdict=result.decision,
        reason=result.reason,
    )
