import pytest

from thunder_dagster.feedback.abtest import compare, summarize, wilson_interval
from thunder_dagster.feedback.records import VariantOutcome

pytestmark = pytest.mark.clock  # the answers depend on the day or the hour


def outcome(variant, positive, negative, version="1.0.0"):
    scores = (5,) * positive + (2,) * negative
    return VariantOutcome(variant, version, len(scores) + 10, scores)


def test_a_clearly_better_challenger_is_promoted():
    # 50% against 70% positive over 200 rated answers each: z = 4.08, p = 4.5e-5.
    result = compare(outcome("champion", 100, 100), outcome("challenger", 140, 60, "1.0.1"))
    assert result.decision == "promote" and result.significantly_better
    assert result.positive_rate_p_value == pytest.approx(4.5e-5, rel=0.05)
    assert result.challenger.positive_rate == pytest.approx(0.7)
    low, high = result.challenger.positive_rate_ci
    assert low < 0.7 < high and high - low < 0.14
    assert result.challenger.answers == 210 and result.challenger.rated == 200


def test_a_small_difference_is_retired_and_a_small_sample_waits():
    same = compare(outcome("champion", 100, 100), outcome("challenger", 108, 92))
    assert same.decision == "retire" and 0.4 < same.positive_rate_p_value < 0.5
    worse = compare(outcome("champion", 140, 60), outcome("challenger", 100, 100))
    assert worse.decision == "retire" and worse.positive_rate_p_value < 0.001
    early = compare(outcome("champion", 10, 10), outcome("challenger", 20, 0), min_sample=100)
    assert early.decision == "continue" and "each needs 100" in early.reason


def test_the_intervals_match_their_textbook_values():
    # Wilson interval of 8 successes in 10: (0.490, 0.943).
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-3) and high == pytest.approx(0.9433, abs=1e-3)
    summary = summarize(VariantOutcome("champion", "1.0.0", 4, (1, 2, 3, 4)))
    # mean 2.5, sd 1.291, t(0.975, 3) = 3.182: 2.5 +- 2.054
    assert summary.mean_score == 2.5
    assert summary.mean_score_ci == pytest.approx((0.446, 4.554), abs=1e-3)


def test_a_variant_without_rated_answers_still_plots():
    from thunder_dagster.modeling.plots import ab_comparison

    empty = summarize(VariantOutcome("challenger", "1.1.0", 0, ()))
    rated = summarize(VariantOutcome("champion", "1.0.0", 3, (5, 4, 2)))
    plot = ab_comparison([rated.plot_point(), empty.plot_point()], title="no answers yet")
    assert plot[:4] == b"\x89PNG"
