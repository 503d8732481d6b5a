import json

import dagster as dg

from thunder_dagster.jobs.feedback import distillation_job, fine_tune_job

JOBS = {
    "fine_tune": (fine_tune_job, "fine_tuned_model"),
    "distillation": (distillation_job, "distilled_model"),
}


@dg.sensor(
    jobs=[fine_tune_job, distillation_job],
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Starts the fine-tune or distillation run a daily analysis decided on, with its "
    "learning rate; one run per agent, day and rule, however often the day is analysed.",
)
def retraining_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    after = json.loads(context.cursor)["storage_id"] if context.cursor else None
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("training_triggers"), after_storage_id=after),
        limit=100,
        ascending=True,
    ).records
    requests, skipped = [], []
    for record in records:
        after = record.storage_id
        metadata = {k: v.value for k, v in record.asset_materialization.metadata.items()}
        rule, agent_id, day = metadata.get("rule"), metadata.get("agent_id"), metadata.get("day")
        if rule not in JOBS:
            skipped.append(f"{agent_id} {day}: {metadata.get('reason')}")
            continue
        job, asset = JOBS[rule]
        requests.append(
            dg.RunRequest(
                run_key=f"{rule}:{agent_id}:{day}",
                job_name=job.name,
                partition_key=agent_id,
                run_config={
                    "ops": {asset: {"config": {"learning_rate": metadata["learning_rate"]}}}
                },
                tags={
                    "thunder/trigger": "daily_analysis",
                    "thunder/day": day,
                    "thunder/rule": rule,
                },
            )
        )
    return dg.SensorResult(
        run_requests=requests,
        skip_reason=None if requests else ("; ".join(skipped) or "no new analysis"),
        cursor=json.dumps({"storage_id": after}),
    )
