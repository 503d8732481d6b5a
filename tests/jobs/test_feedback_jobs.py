"""The daily analysis schedule and the A/B schedule's choice of agents."""

from datetime import datetime

import dagster as dg
import pytest

from tests.factories import analyse, deploy_tiny
from thunder_dagster.jobs.feedback import (
    CATCH_UP_DAYS,
    ab_test_schedule,
    daily_analysis_schedule,
    days_to_analyse,
)
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore

pytestmark = pytest.mark.clock  # the answers depend on the day or the hour


def test_the_schedule_asks_for_yesterday_of_every_agent_once_per_day():
    with dg.instance_for_test() as instance:
        moment = datetime(2026, 3, 4, 2, 0)
        # Each context is entered and left: one left open keeps the instance as the current
        # definitions-state storage, and the next definitions to load find it closed.
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=moment) as at:
            assert isinstance(daily_analysis_schedule(at), dg.SkipReason)
        instance.add_dynamic_partitions("agents", ["acme", "zeta"])
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=moment) as at:
            requests = daily_analysis_schedule(at)
        assert [r.partition_key for r in requests] == ["acme|2026-03-03", "zeta|2026-03-03"]
        assert [r.run_key for r in requests] == [
            "analysis:acme:2026-03-03",
            "analysis:zeta:2026-03-03",
        ]


def test_the_ab_schedule_asks_only_for_agents_with_a_challenger_or_a_best_of_test(home, store):
    from thunder_dagster.feedback.experiments import AbTestStore, best_of_version

    deploy_tiny(home, "acme")
    deploy_tiny(home, "acme", seed=1, role="challenger")
    deploy_tiny(home, "zeta")
    deploy_tiny(home, "omni")
    tests = AbTestStore(store.engine)
    tests.create("omni", "1.0.0", best_of_version("1.0.0", 4), 0.5, "test")
    moment = datetime(2026, 3, 4, 2, 30)
    thunder = ThunderHome(root=str(home.root))
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["acme", "zeta", "omni"])
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=moment,
            resources={"thunder": thunder, "queries": QueryLogStore(thunder=thunder)},
        ) as context:
            requests = ab_test_schedule(context)
    assert [(r.partition_key, r.run_key) for r in requests] == [
        ("acme", "ab:acme:2026-03-04T02"),
        ("omni", "ab:omni:2026-03-04T02"),
    ]


def test_after_downtime_the_schedule_asks_for_each_missed_day_as_its_own_partition(home):
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["acme", "zeta"])
        assert analyse(home, instance, "2026-03-01").success
        # The first tick after three days down: 5 March, 02:00.
        moment = datetime(2026, 3, 5, 2, 0)
        with dg.build_schedule_context(instance=instance, scheduled_execution_time=moment) as at:
            requests = daily_analysis_schedule(at)
    assert [r.partition_key for r in requests] == [
        "acme|2026-03-02",
        "acme|2026-03-03",
        "acme|2026-03-04",
        "zeta|2026-03-04",  # never analysed: its yesterday alone
    ]


def test_the_catch_up_stops_at_the_last_analysed_day_and_after_a_week():
    assert days_to_analyse("2026-03-04", {"2026-03-02"}) == ["2026-03-03", "2026-03-04"]
    assert days_to_analyse("2026-03-04", {"2026-03-04", "2026-03-03"}) == ["2026-03-04"]
    assert len(days_to_analyse("2026-03-30", {"2026-03-01"})) == CATCH_UP_DAYS
    assert days_to_analyse("2026-01-02", {"2025-12-01"}) == ["2026-01-01", "2026-01-02"]
