"""The daily analysis schedule and the A/B schedule's choice of agents."""

from datetime import datetime

import dagster as dg

from tests.factories import deploy_tiny
from thunder_dagster.jobs.feedback import ab_test_schedule, daily_analysis_schedule
from thunder_dagster.resources.home import ThunderHome


def test_the_schedule_asks_for_yesterday_of_every_agent_once_per_day():
    with dg.instance_for_test() as instance:
        moment = datetime(2026, 3, 4, 2, 0)
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=moment)
        assert isinstance(daily_analysis_schedule(context), dg.SkipReason)
        instance.add_dynamic_partitions("agents", ["acme", "zeta"])
        context = dg.build_schedule_context(instance=instance, scheduled_execution_time=moment)
        requests = daily_analysis_schedule(context)
        assert [r.partition_key for r in requests] == ["acme|2026-03-03", "zeta|2026-03-03"]
        assert [r.run_key for r in requests] == [
            "analysis:acme:2026-03-03",
            "analysis:zeta:2026-03-03",
        ]


def test_the_ab_schedule_asks_only_for_agents_with_a_challenger(home):
    deploy_tiny(home, "acme")
    deploy_tiny(home, "acme", seed=1, role="challenger")
    deploy_tiny(home, "zeta")
    moment = datetime(2026, 3, 4, 2, 30)
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["acme", "zeta"])
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=moment,
            resources={"thunder": ThunderHome(root=str(home.root))},
        ) as context:
            requests = ab_test_schedule(context)
    assert [(r.partition_key, r.run_key) for r in requests] == [("acme", "ab:acme:2026-03-04T02")]
