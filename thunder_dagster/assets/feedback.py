from dataclasses import dataclass
from datetime import date, datetime

import dagster as dg

from thunder_dagster.feedback.records import QueryStats
from thunder_dagster.feedback.rules import Decision, day_bounds, decide
from thunder_dagster.resources.queries import QueryLogStore
from thunder_dagster.runtime.metadata import markdown_table
from thunder_dagster.runtime.partitions import ANALYSIS_TIMEZONE, agent_days


@dataclass(frozen=True)
class WindowStats:
    agent_id: str
    day: str
    window_start: datetime
    window_end: datetime
    stats: QueryStats


def agent_and_day(context: dg.AssetExecutionContext) -> tuple[str, date]:
    key = context.partition_key.keys_by_dimension
    return key["agent"], date.fromisoformat(key["day"])


@dg.asset(group_name="feedback", kinds={"sql"}, partitions_def=agent_days)
def query_log_stats(
    context: dg.AssetExecutionContext, queries: QueryLogStore
) -> dg.Output[WindowStats]:
    """The statistics of an agent's answers over one day, exactly its 24 hours.

    Totals, confidence, teacher fallbacks and feedback. Days the schedule missed are partitions
    of their own, which it requests when it runs again."""
    agent_id, day = agent_and_day(context)
    start, end = day_bounds(day, ANALYSIS_TIMEZONE)
    with queries.open() as store:
        stats = store.stats(agent_id, start, end)
    values = stats.as_dict()
    context.log.info(f"{agent_id} {day}: {values} over [{start}, {end}) UTC")
    return dg.Output(
        WindowStats(agent_id, day.isoformat(), start, end, stats),
        metadata={
            "window_start_utc": start.isoformat(),
            "window_end_utc": end.isoformat(),
            **{
                name: float(value) if isinstance(value, float) else value
                for name, value in values.items()
            },
        },
    )


@dg.asset(group_name="feedback", kinds={"sql"}, partitions_def=agent_days)
def training_triggers(
    context: dg.AssetExecutionContext,
    query_log_stats: WindowStats,
    queries: QueryLogStore,
) -> dg.Output[Decision]:
    """The retraining the day's statistics call for: fine_tune, distillation or none.

    With the rules' inputs, the reason and the learning rate; recorded in the query-log store,
    where retraining_sensor reads it."""
    decision = decide(query_log_stats.stats)
    with queries.open() as store:
        store.record_analysis(
            query_log_stats.agent_id,
            date.fromisoformat(query_log_stats.day),
            query_log_stats.window_start,
            query_log_stats.window_end,
            decision.to_json(),
        )
    context.log.info(
        f"{query_log_stats.agent_id} {query_log_stats.day}: {decision.change}: {decision.reason}"
    )
    return dg.Output(
        decision,
        metadata={
            "change": decision.change,
            "fires": decision.fires,
            "reason": decision.reason,
            "learning_rate": dg.MetadataValue.float(decision.learning_rate),
            "agent_id": query_log_stats.agent_id,
            "day": query_log_stats.day,
            "inputs": markdown_table(
                ["statistic", "value"],
                [[name, f"{value:.4g}"] for name, value in decision.inputs.items()],
            ),
        },
    )
