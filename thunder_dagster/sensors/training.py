import json
import os
import time

import dagster as dg

from thunder_dagster.assets.partitions import agents
from thunder_dagster.home import CATEGORIES
from thunder_dagster.jobs.training import pipeline_job, prompt_training, training_job

IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


def debounce_seconds() -> float:
    return float(os.environ.get("THUNDER_TRAINING_DEBOUNCE", "60"))


def _latest_metadata(instance, asset: str, agent_id: str):
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey(asset), asset_partitions=[agent_id]), limit=1
    ).records
    if not records:
        return None, None
    record = records[0]
    metadata = record.asset_materialization.metadata if record.asset_materialization else {}
    return {key: value.value for key, value in metadata.items()}, record.timestamp


@dg.sensor(
    job=training_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests training once an agent has an ok document in every category, and "
    "again when its dataset changes; waits until the dataset has been still for "
    "THUNDER_TRAINING_DEBOUNCE seconds (60) and no run of the agent is in flight.",
)
def training_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    requested = json.loads(context.cursor) if context.cursor else {}
    requests, waiting = [], []
    for agent_id in context.instance.get_dynamic_partitions(agents.name):
        dataset, materialized_at = _latest_metadata(context.instance, "training_dataset", agent_id)
        if dataset is None:
            continue
        version = dataset.get("version")
        if requested.get(agent_id) == version:
            continue
        categories = dataset.get("categories") or {}
        missing = [category for category in CATEGORIES if not categories.get(category)]
        if missing:
            waiting.append(f"{agent_id}: no document yet in {', '.join(missing)}")
            continue
        trained, _ = _latest_metadata(context.instance, "tpe_trials", agent_id)
        if trained and trained.get("dataset_version") == version:
            requested[agent_id] = version
            continue
        if time.time() - materialized_at < debounce_seconds():
            waiting.append(f"{agent_id}: dataset {version} is younger than the debounce")
            continue
        in_flight = context.instance.get_runs(
            filters=dg.RunsFilter(statuses=IN_PROGRESS, tags={"dagster/partition": agent_id}),
            limit=1,
        )
        if in_flight:
            waiting.append(f"{agent_id}: run {in_flight[0].run_id[:8]} is in flight")
            continue
        requested[agent_id] = version
        requests.append(
            dg.RunRequest(
                run_key=f"train:{agent_id}:{version}",
                partition_key=agent_id,
                tags={"thunder/dataset_version": version, "thunder/trigger": "dataset"},
            )
        )
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(requested, sort_keys=True),
        skip_reason=None if requests else "; ".join(waiting) or "nothing new to train",
    )


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[prompt_training],
    request_job=pipeline_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a prompt_training run wrote its document, runs the whole pipeline for "
    "that agent with the prompt's model family and priority.",
)
def prompt_followup(context: dg.RunStatusSensorContext):
    config = context.dagster_run.run_config["ops"]["prompt_document"]["config"]
    model_type = config.get("model_type", "auto")
    run_config = (
        {"ops": {"tpe_trials": {"config": {"families": [model_type]}}}}
        if model_type != "auto"
        else {}
    )
    return dg.RunRequest(
        run_key=f"prompt:{context.dagster_run.run_id}",
        partition_key=config["agent_id"],
        run_config=run_config,
        tags={
            "dagster/priority": str(config.get("priority", 0)),
            "thunder/trigger": "prompt",
            "thunder/prompt_run": context.dagster_run.run_id,
        },
    )
