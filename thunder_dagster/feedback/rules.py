"""Seed 004's daily trigger rules, exactly as DESIGN.md states them, and the analysis window.

- fine-tune when positive_feedback >= 50 and avg_confidence >= 0.6 and fallback_rate < 0.3
- distillation when fallback_rate > 0.4 and teacher_fallbacks >= 100
- learning rate = 1e-4 x 0.5 when avg_confidence >= 0.8, x 1 when >= 0.6, x 2 otherwise

A classification or sentiment agent has a rule of its own (not the seed's): relabel when the
day brought enough corrected labels.
"""

import json
from dataclasses import asdict, dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from thunder_dagster.feedback.records import QueryStats

BASE_LEARNING_RATE = 1e-4
FINE_TUNE_MIN_POSITIVE = 50
FINE_TUNE_MIN_CONFIDENCE = 0.6
FINE_TUNE_MAX_FALLBACK_RATE = 0.3
DISTILL_MIN_FALLBACK_RATE = 0.4
DISTILL_MIN_FALLBACKS = 100
# Not a seed rule: a classifier is trained again on its users' labels once a day brings this
# many corrections (each user's first 5 of the day count, so at least 4 people gave them).
RELABEL_MIN_CORRECTIONS = 20


@dataclass(frozen=True)
class Decision:
    change: str  # fine_tune, distillation or none: the change the rules ask for
    reason: str
    learning_rate: float
    inputs: dict

    @property
    def fires(self) -> bool:
        return self.change in ("fine_tune", "distillation", "relabel")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Decision":
        values = json.loads(text)
        # Analyses recorded before the field was named `change` stored it as `rule`.
        if "rule" in values:
            values["change"] = values.pop("rule")
        return cls(**values)


def learning_rate(avg_confidence: float) -> float:
    if avg_confidence >= 0.8:
        return BASE_LEARNING_RATE * 0.5
    if avg_confidence >= 0.6:
        return BASE_LEARNING_RATE
    return BASE_LEARNING_RATE * 2.0


def decide(stats: QueryStats) -> Decision:
    inputs = stats.as_dict()
    rate = learning_rate(stats.avg_confidence)
    if (
        stats.positive_feedback >= FINE_TUNE_MIN_POSITIVE
        and stats.avg_confidence >= FINE_TUNE_MIN_CONFIDENCE
        and stats.fallback_rate < FINE_TUNE_MAX_FALLBACK_RATE
    ):
        reason = (
            f"positive_feedback {stats.positive_feedback} >= {FINE_TUNE_MIN_POSITIVE}, "
            f"avg_confidence {stats.avg_confidence:.3f} >= {FINE_TUNE_MIN_CONFIDENCE}, "
            f"fallback_rate {stats.fallback_rate:.3f} < {FINE_TUNE_MAX_FALLBACK_RATE}"
        )
        return Decision("fine_tune", reason, rate, inputs)
    if (
        stats.fallback_rate > DISTILL_MIN_FALLBACK_RATE
        and stats.teacher_fallbacks >= DISTILL_MIN_FALLBACKS
    ):
        reason = (
            f"fallback_rate {stats.fallback_rate:.3f} > {DISTILL_MIN_FALLBACK_RATE}, "
            f"teacher_fallbacks {stats.teacher_fallbacks} >= {DISTILL_MIN_FALLBACKS}"
        )
        return Decision("distillation", reason, rate, inputs)
    return Decision("none", _why_not(stats), rate, inputs)


def decide_labels(stats: QueryStats) -> Decision:
    """A classifier's rule: relabel (its labelled examples taken again, users' corrections
    included, which trains a classifier through the champion gate) when the day brought
    RELABEL_MIN_CORRECTIONS corrections."""
    inputs = stats.as_dict()
    if stats.corrections >= RELABEL_MIN_CORRECTIONS:
        reason = (
            f"corrections {stats.corrections} >= {RELABEL_MIN_CORRECTIONS} "
            f"(from {stats.correctors} users)"
        )
        return Decision("relabel", reason, BASE_LEARNING_RATE, inputs)
    reason = (
        f"no rule fired: relabel held back by corrections {stats.corrections} < "
        f"{RELABEL_MIN_CORRECTIONS}"
    )
    return Decision("none", reason, BASE_LEARNING_RATE, inputs)


def _why_not(stats: QueryStats) -> str:
    if stats.total_queries == 0:
        return "not enough data: no queries in the window"
    missing = []
    if stats.positive_feedback < FINE_TUNE_MIN_POSITIVE:
        missing.append(f"positive_feedback {stats.positive_feedback} < {FINE_TUNE_MIN_POSITIVE}")
    if stats.avg_confidence < FINE_TUNE_MIN_CONFIDENCE:
        missing.append(f"avg_confidence {stats.avg_confidence:.3f} < {FINE_TUNE_MIN_CONFIDENCE}")
    if stats.fallback_rate >= FINE_TUNE_MAX_FALLBACK_RATE:
        missing.append(f"fallback_rate {stats.fallback_rate:.3f} >= {FINE_TUNE_MAX_FALLBACK_RATE}")
    distill = []
    if stats.fallback_rate <= DISTILL_MIN_FALLBACK_RATE:
        distill.append(f"fallback_rate {stats.fallback_rate:.3f} <= {DISTILL_MIN_FALLBACK_RATE}")
    if stats.teacher_fallbacks < DISTILL_MIN_FALLBACKS:
        distill.append(f"teacher_fallbacks {stats.teacher_fallbacks} < {DISTILL_MIN_FALLBACKS}")
    return (
        f"no rule fired: fine-tune held back by {', '.join(missing)}; "
        f"distillation held back by {', '.join(distill)}"
    )


def day_bounds(day: date, timezone: str) -> tuple[datetime, datetime]:
    """The day's start and end in `timezone`, as UTC."""
    zone = ZoneInfo(timezone)
    start = datetime.combine(day, time(), zone)
    end = datetime.combine(day + timedelta(days=1), time(), zone)
    return start.astimezone(UTC), end.astimezone(UTC)
