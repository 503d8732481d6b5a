"""Each seed rule fires on a synthetic incident and is quiet once it clears."""

from datetime import UTC, datetime, timedelta

import pytest

from thunder_dagster.monitoring.rules import (
    AbEvent,
    Finished,
    Observations,
    Thresholds,
    Versions,
    evaluate,
)

pytestmark = pytest.mark.clock  # the answers depend on the day or the hour

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)
BOUNDS = Thresholds()


def fired(seen: Observations) -> set[tuple[str, str]]:
    return {(c.rule, c.subject) for c in evaluate(seen, BOUNDS)}


def runs(failed: int, succeeded: int) -> list[Finished]:
    ended = NOW - timedelta(hours=1)
    return [Finished("pipeline_job", False, ended)] * failed + [
        Finished("fine_tune_job", True, ended)
    ] * succeeded


def test_the_seeds_defaults():
    assert (BOUNDS.training_failure_rate, BOUNDS.cleanup_overdue_hours) == (0.1, 2.0)
    assert BOUNDS.embedding_backlog == 100


def test_training_failure_rate_above_a_tenth_fires_and_at_a_tenth_does_not():
    assert fired(Observations(NOW, training_runs=runs(2, 8))) == {("training_failure_rate", "all")}
    assert fired(Observations(NOW, training_runs=runs(1, 9))) == set()
    assert fired(Observations(NOW)) == set()  # no runs: no rate


def test_cleanup_overdue_counts_from_the_last_success_or_from_first_use():
    late = Observations(NOW, last_cleanup=NOW - timedelta(hours=2, minutes=1))
    assert fired(late) == {("cleanup_overdue", "all")}
    assert fired(Observations(NOW, last_cleanup=NOW - timedelta(minutes=50))) == set()
    never = Observations(NOW, in_use_since=NOW - timedelta(hours=3))
    assert fired(never) == {("cleanup_overdue", "all")}
    assert fired(Observations(NOW, in_use_since=NOW - timedelta(hours=1))) == set()


def test_an_embedding_backlog_over_100_fires_for_that_agent_only():
    seen = Observations(NOW, embedding_backlog={"bakery": 101, "bard": 100})
    assert fired(seen) == {("embedding_backlog", "bakery")}


def test_high_latency_needs_enough_answers_over_the_bound():
    slow = Observations(NOW, latency_p95_ms={"bakery": (1500.0, 20), "bard": (1500.0, 2)})
    assert fired(slow) == {("high_latency", "bakery")}


def test_low_quality_a_worse_challenger_or_a_retirement_within_a_day():
    worse = Versions("v1", 1.50, "v2", 1.60)
    better = Versions("v1", 1.50, "v2", 1.40)
    assert fired(Observations(NOW, versions={"a": worse, "b": better})) == {("low_quality", "a")}
    # A classifier's pair by macro F1, where lower is worse.
    f1_worse = Versions("v1", 0.90, "v2", 0.60, "macro F1", higher_is_better=True)
    f1_better = Versions("v1", 0.60, "v2", 0.90, "macro F1", higher_is_better=True)
    found = fired(Observations(NOW, versions={"c": f1_worse, "d": f1_better}))
    assert found == {("low_quality", "c")}
    retired = AbEvent("b", "v3", "retire", NOW - timedelta(hours=3))
    assert fired(Observations(NOW, ab_events=[retired])) == {("low_quality", "b")}
    old = AbEvent("b", "v3", "retire", NOW - timedelta(hours=25))
    assert fired(Observations(NOW, ab_events=[old])) == set()


def test_an_ab_test_that_promoted_its_challenger_reached_significance():
    promoted = AbEvent("b", "v3", "promote", NOW - timedelta(minutes=5))
    assert fired(Observations(NOW, ab_events=[promoted])) == {("ab_significant", "b")}
    # The latest decision counts: a later retirement of the next challenger replaces it.
    later = AbEvent("b", "v4", "retire", NOW - timedelta(minutes=1))
    assert fired(Observations(NOW, ab_events=[promoted, later])) == {("low_quality", "b")}


def test_resource_exhaustion_disk_and_spool():
    seen = Observations(NOW, free_disk_bytes=2**29, spool_rows=101)
    assert fired(seen) == {("resource_exhaustion", "disk"), ("resource_exhaustion", "spool")}
    assert fired(Observations(NOW, free_disk_bytes=2**31, spool_rows=100)) == set()


def test_drift_above_its_bound():
    seen = Observations(NOW, drift={"a": ("2026-12-01", 3.5), "b": ("2026-12-01", 2.0)})
    assert fired(seen) == {("drift", "a")}
