from datetime import UTC, date, datetime, timedelta

import pytest

from thunder_dagster.feedback.records import QueryStats
from thunder_dagster.feedback.rules import day_bounds, decide, learning_rate

pytestmark = pytest.mark.clock  # the answers depend on the day or the hour


def stats(total=1000, confidence=0.7, fallbacks=0, positive=0, feedback=None, **more):
    return QueryStats(
        total_queries=total,
        avg_confidence=confidence,
        teacher_fallbacks=fallbacks,
        high_confidence_responses=0,
        user_feedback_available=positive if feedback is None else feedback,
        positive_feedback=positive,
        **more,
    )


@pytest.mark.parametrize(
    ("positive", "confidence", "fallbacks", "fires"),
    [
        (50, 0.6, 0, True),  # every bound met exactly
        (49, 0.9, 0, False),  # one positive short
        (50, 0.5999, 0, False),  # confidence just under 0.6
        (50, 0.6, 299, True),  # fallback_rate 0.299 < 0.3
        (50, 0.6, 300, False),  # fallback_rate exactly 0.3 is not < 0.3
    ],
)
def test_the_fine_tune_rule_at_its_boundaries(positive, confidence, fallbacks, fires):
    decision = decide(stats(positive=positive, confidence=confidence, fallbacks=fallbacks))
    assert (decision.change == "fine_tune") is fires
    assert decision.inputs["positive_feedback"] == positive


@pytest.mark.parametrize(
    ("total", "fallbacks", "fires"),
    [
        (250, 100, False),  # fallback_rate exactly 0.4 is not > 0.4
        (249, 100, True),  # 0.4016 > 0.4 with exactly 100 fallbacks
        (247, 99, False),  # 99 fallbacks is one short
        (200, 100, True),
    ],
)
def test_the_distillation_rule_at_its_boundaries(total, fallbacks, fires):
    decision = decide(stats(total=total, fallbacks=fallbacks, positive=0))
    assert (decision.change == "distillation") is fires
    if not fires:
        assert "no rule fired" in decision.reason


@pytest.mark.parametrize(
    ("confidence", "rate"),
    [(0.95, 5e-5), (0.8, 5e-5), (0.7999, 1e-4), (0.6, 1e-4), (0.5999, 2e-4), (0.0, 2e-4)],
)
def test_the_learning_rate_table(confidence, rate):
    assert learning_rate(confidence) == pytest.approx(rate)
    assert decide(stats(confidence=confidence)).learning_rate == pytest.approx(rate)


def test_no_queries_is_not_enough_data_with_that_reason():
    decision = decide(stats(total=0, confidence=0.0))
    assert decision.change == "none" and not decision.fires
    assert decision.reason.startswith("not enough data")


def test_a_decision_survives_a_json_round_trip():
    decision = decide(stats(positive=60, confidence=0.85))
    assert type(decision).from_json(decision.to_json()) == decision


def test_each_day_is_exactly_that_day_in_its_timezone():
    assert day_bounds(date(2026, 3, 1), "UTC") == (
        datetime(2026, 3, 1, tzinfo=UTC),
        datetime(2026, 3, 2, tzinfo=UTC),
    )
    start, end = day_bounds(date(2026, 7, 1), "Europe/Paris")
    assert (start, end) == (
        datetime(2026, 6, 30, 22, tzinfo=UTC),
        datetime(2026, 7, 1, 22, tzinfo=UTC),
    )
    # The day the clocks go forward has 23 hours in that zone, and its window too.
    start, end = day_bounds(date(2026, 3, 29), "Europe/Paris")
    assert end - start == timedelta(hours=23)


@pytest.mark.parametrize("corrections, change", [(0, "none"), (19, "none"), (20, "relabel")])
def test_the_relabel_rule_at_its_boundary(corrections, change):
    from thunder_dagster.feedback.rules import RELABEL_MIN_CORRECTIONS, decide_labels

    assert RELABEL_MIN_CORRECTIONS == 20
    decision = decide_labels(stats(corrections=corrections, correctors=corrections))
    assert decision.change == change and decision.fires == (change == "relabel")
    assert f"corrections {corrections}" in decision.reason
