import dagster as dg

from thunder_dagster.jobs.feedback import distillation_job, fine_tune_job

JOBS = {
    "fine_tune": (fine_tune_job, "fine_tuned_model"),
    "distillation": (distillation_job, "distilled_model"),
}


@dg.asset_sensor(
    asset_key=dg.AssetKey("training_triggers"),
    jobs=[fine_tune_job, distillation_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts the fine-tune or distillation run a daily analysis decided on, with its "
    "learning rate; one run per agent, day and rule.",
)
def retraining_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry):
    materialization = asset_event.asset_materialization
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    rule = metadata.get("rule")
    if rule not in JOBS:
        return dg.SkipReason(
            f"{metadata.get('agent_id')} {metadata.get('day')}: {metadata.get('reason')}"
        )
    job, asset = JOBS[rule]
    agent_id, day = metadata["agent_id"], metadata["day"]
    return dg.RunRequest(
        run_key=f"{rule}:{agent_id}:{day}",
        job_name=job.name,
        partition_key=agent_id,
        run_config={"ops": {asset: {"config": {"learning_rate": metadata["learning_rate"]}}}},
        tags={"thunder/trigger": "daily_analysis", "thunder/day": day, "thunder/rule": rule},
    )
