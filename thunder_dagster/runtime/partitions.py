"""The partitions every agent-scoped asset, job and sensor shares."""

import dagster as dg

from thunder_dagster import settings

agents = dg.DynamicPartitionsDefinition(name="agents")

# The daily analysis runs per agent and per day, in THUNDER_TIMEZONE (UTC by default): the
# day's bounds and the 02:00 schedule are both read in that zone.
ANALYSIS_TIMEZONE = settings.TIMEZONE.value()
ANALYSIS_START = "2026-01-01"
# end_offset=1: today is a partition too, so `thunder analyze --day <today>` can look at a
# day still in progress (the schedule analyses yesterday, once it is over).
days = dg.DailyPartitionsDefinition(
    start_date=ANALYSIS_START, timezone=ANALYSIS_TIMEZONE, end_offset=1
)
agent_days = dg.MultiPartitionsDefinition({"agent": agents, "day": days})
