import json
from datetime import datetime

import dagster as dg

from thunder_dagster.feedback.rules import Decision
from thunder_dagster.jobs.feedback import (
    adaptation_job,
    distillation_job,
    fine_tune_job,
    relabel_job,
)
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore

# change -> its job, and the asset that takes the decision's learning rate (None: none does)
JOBS = {
    "fine_tune": (fine_tune_job, "fine_tuned_model"),
    "distillation": (distillation_job, "distilled_model"),
    "relabel": (relabel_job, None),
}
# A chat or instruction agent learns from the same rules through its adapter on the instruct
# base: one job for both, whose search picks its own learning rate.
ADAPTED = {"fine_tune", "distillation"}


def adapts(thunder: ThunderHome, agent_id: str) -> bool:
    """Whether the agent answers through the instruct base (and so learns by its adapter)."""
    from thunder_dagster.tasks.agents import AgentSettingsError, read_task
    from thunder_dagster.tasks.registry import task_kind

    try:
        return task_kind(read_task(thunder.home().agent_dir(agent_id))).model == "instruct"
    except AgentSettingsError:
        return False


@dg.sensor(
    jobs=[fine_tune_job, distillation_job, adaptation_job, relabel_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts the fine-tune, distillation or relabelling run a daily analysis decided "
    "on, with its learning rate (a chat or instruction agent's adaptation instead of either "
    "retraining); one run per agent, day and change, however often the day is analysed.",
)
def retraining_sensor(
    context: dg.SensorEvaluationContext, queries: QueryLogStore, thunder: ThunderHome
) -> dg.SensorResult:
    """Reads the analyses the query-log store keeps (training_triggers records each one there),
    not the asset's metadata: the store is the decision's one home."""
    after = json.loads(context.cursor)["analysed_at"] if context.cursor else None
    with queries.open() as store:
        analyses = store.analyses_since(datetime.fromisoformat(after) if after else None)
    requests, skipped = [], []
    for analysis in analyses:
        after = analysis.analysed_at.isoformat()
        decision = Decision.from_json(analysis.decision)
        agent_id, day, change = analysis.agent_id, analysis.day.isoformat(), decision.change
        if change not in JOBS:
            skipped.append(f"{agent_id} {day}: {decision.reason}")
            continue
        job, asset = JOBS[change]
        if change in ADAPTED and adapts(thunder, agent_id):
            job, asset = adaptation_job, None
        requests.append(
            dg.RunRequest(
                run_key=f"{change}:{agent_id}:{day}",
                job_name=job.name,
                partition_key=agent_id,
                run_config={"ops": {asset: {"config": {"learning_rate": decision.learning_rate}}}}
                if asset
                else {},
                tags={
                    "thunder/trigger": "daily_analysis",
                    "thunder/day": day,
                    "thunder/change": change,
                },
            )
        )
    return dg.SensorResult(
        run_requests=requests,
        skip_reason=None if requests else ("; ".join(skipped) or "no new analysis"),
        cursor=json.dumps({"analysed_at": after}),
    )
