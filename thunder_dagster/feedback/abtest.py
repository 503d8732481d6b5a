"""The A/B test of a challenger against the champion, from the scores users gave their answers.

The primary measure is the share of rated answers that were right, compared by a two-sided
two-proportion z-test: for a generator its positive rate (scores of 4 or 5), for a classifier
its accuracy (an answer whose user gave the correct label is right when it is that label, one
rated without a label when it scored 4 or 5); the mean score, with a Welch t-test, is reported
beside it. Nothing is decided until both variants have `min_sample` rated answers. Then the
challenger is promoted when its share is higher with p < alpha, and retired otherwise.
"""

import math
from dataclasses import asdict, dataclass

from thunder_dagster.feedback.records import VariantOutcome

# Seed 003: 1,000 rated answers per variant, and 95% confidence.
DEFAULT_MIN_SAMPLE = 1000
DEFAULT_CONFIDENCE = 0.95
# The primary measure's name, by the kind of answer: what the decision's reason says.
POSITIVE_RATE = "positive rate"
ACCURACY = "accuracy"


@dataclass(frozen=True)
class VariantSummary:
    variant: str
    model_version: str
    answers: int
    rated: int
    positive: int
    positive_rate: float
    positive_rate_ci: tuple[float, float]
    mean_score: float
    mean_score_ci: tuple[float, float]

    def plot_point(self) -> dict:
        """The variant as the A/B comparison plot draws it (modeling/plots.py)."""
        return {
            "label": f"{self.variant} {self.model_version}",
            "positive_rate": self.positive_rate,
            "positive_rate_ci": self.positive_rate_ci,
            "mean_score": self.mean_score,
            "mean_score_ci": self.mean_score_ci,
        }


@dataclass(frozen=True)
class AbResult:
    champion: VariantSummary
    challenger: VariantSummary
    positive_rate_p_value: float
    mean_score_p_value: float
    min_sample: int
    alpha: float
    decision: str
    reason: str
    # What positive_rate measures: the positive rate, or a classifier's accuracy.
    measure: str = POSITIVE_RATE

    @property
    def significantly_better(self) -> bool:
        return self.decision == "promote"

    def as_dict(self) -> dict:
        return asdict(self)


def outcome_of(outcomes: list[VariantOutcome], variant: str, version: str) -> VariantOutcome:
    """The answers of `variant` served by `version` among `outcomes` (none: an empty one)."""
    for outcome in outcomes:
        if outcome.variant == variant and outcome.model_version == version:
            return outcome
    return VariantOutcome(variant, version, 0, ())


def wilson_interval(positive: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    from scipy.stats import norm

    if total == 0:
        return (0.0, 1.0)
    z = float(norm.ppf(0.5 + confidence / 2))
    rate = positive / total
    centre = (rate + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(rate * (1 - rate) / total + z * z / (4 * total * total))
    half /= 1 + z * z / total
    return (max(0.0, centre - half), min(1.0, centre + half))


def summarize(outcome: VariantOutcome, confidence: float = 0.95) -> VariantSummary:
    from scipy.stats import t

    scores = outcome.scores
    rated = len(scores)
    positive = sum(outcome.rights())
    mean = sum(scores) / rated if rated else 0.0
    if rated > 1:
        spread = math.sqrt(sum((s - mean) ** 2 for s in scores) / (rated - 1) / rated)
        half = float(t.ppf(0.5 + confidence / 2, rated - 1)) * spread
        mean_ci = (mean - half, mean + half)
    else:
        mean_ci = (1.0, 5.0)
    return VariantSummary(
        variant=outcome.variant,
        model_version=outcome.model_version,
        answers=outcome.queries,
        rated=rated,
        positive=positive,
        positive_rate=positive / rated if rated else 0.0,
        positive_rate_ci=wilson_interval(positive, rated, confidence),
        mean_score=mean,
        mean_score_ci=mean_ci,
    )


def two_proportion_p_value(a: VariantSummary, b: VariantSummary) -> float:
    """Two-sided z-test of equal positive rates, with the pooled rate under the null."""
    from scipy.stats import norm

    if a.rated == 0 or b.rated == 0:
        return 1.0
    pooled = (a.positive + b.positive) / (a.rated + b.rated)
    error = math.sqrt(pooled * (1 - pooled) * (1 / a.rated + 1 / b.rated))
    if error == 0:
        return 1.0
    z = (b.positive_rate - a.positive_rate) / error
    return float(2 * norm.sf(abs(z)))


def compare(
    champion: VariantOutcome,
    challenger: VariantOutcome,
    min_sample: int = 100,
    alpha: float = 0.05,
    measure: str = POSITIVE_RATE,
) -> AbResult:
    from scipy.stats import ttest_ind

    a, b = summarize(champion), summarize(challenger)
    p_rate = two_proportion_p_value(a, b)
    if a.rated > 1 and b.rated > 1 and (len(set(champion.scores + challenger.scores)) > 1):
        p_mean = float(ttest_ind(challenger.scores, champion.scores, equal_var=False).pvalue)
        p_mean = 1.0 if math.isnan(p_mean) else p_mean
    else:
        p_mean = 1.0
    rates = f"{measure} {b.positive_rate:.3f} against {a.positive_rate:.3f}"
    if min(a.rated, b.rated) < min_sample:
        decision = "continue"
        reason = (
            f"not enough rated answers yet: champion {a.rated}, challenger {b.rated}; "
            f"each needs {min_sample}"
        )
    elif b.positive_rate > a.positive_rate and p_rate < alpha:
        decision = "promote"
        reason = f"challenger significantly better: {rates}, p = {p_rate:.4g} < {alpha}"
    else:
        decision = "retire"
        reason = f"challenger not significantly better: {rates}, p = {p_rate:.4g}"
    return AbResult(a, b, p_rate, p_mean, min_sample, alpha, decision, reason, measure)
