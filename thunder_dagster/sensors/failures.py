import json
from datetime import UTC, datetime

import dagster as dg

from thunder_dagster.home import AGENT_ID_PATTERN
from thunder_dagster.resources.home import ThunderHome


@dg.run_failure_sensor(default_status=dg.DefaultSensorStatus.RUNNING)
def run_failure_sensor(context: dg.RunFailureSensorContext, thunder: ThunderHome) -> None:
    """Records each failed run in the agent's processed/failures.jsonl, beside its ingest report."""
    run = context.dagster_run
    agent_id = run.tags.get("dagster/partition", "")
    failed_steps = [event.step_key for event in context.get_step_failure_events() if event.step_key]
    record = {
        "time": datetime.now(UTC).isoformat(),
        "run_id": run.run_id,
        "job": run.job_name,
        "agent_id": agent_id or None,
        "failed_steps": failed_steps,
        "message": context.failure_event.message,
    }
    home = thunder.home()
    path = (
        home.failure_log_path(agent_id)
        if AGENT_ID_PATTERN.fullmatch(agent_id)
        else home.root / "failures.jsonl"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    context.log.error(
        f"run {run.run_id} of {run.job_name} failed"
        + (f" for agent {agent_id}" if agent_id else "")
        + f" ({', '.join(failed_steps) or 'no step'}); recorded in {path}"
    )
