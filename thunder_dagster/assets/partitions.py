import os

import dagster as dg

agents = dg.DynamicPartitionsDefinition(name="agents")

# The daily analysis runs per agent and per day, in THUNDER_TIMEZONE (UTC by default): the
# day's bounds and the 02:00 schedule are both read in that zone.
ANALYSIS_TIMEZONE = os.environ.get("THUNDER_TIMEZONE", "UTC")
# end_offset=1: today is a partition too, so `thunder analyze --day <today>` can look at a
# day still in progress (the schedule analyses yesterday, once it is over).
days = dg.DailyPartitionsDefinition(
    start_date="2026-01-01", timezone=ANALYSIS_TIMEZONE, end_offset=1
)
agent_days = dg.MultiPartitionsDefinition({"agent": agents, "day": days})
