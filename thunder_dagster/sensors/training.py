import json
from datetime import UTC, datetime

import dagster as dg

from thunder_dagster import settings
from thunder_dagster.deployments.pointers import read_pointer
from thunder_dagster.documents.datasets import latest_dataset
from thunder_dagster.home import CATEGORIES
from thunder_dagster.jobs.training import (
    RUN_PRIORITIES,
    pipeline_job,
    prompt_training_job,
    training_job,
)
from thunder_dagster.modeling.cards import ModelCard, UnreadableCardError
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.runtime.partitions import agents

IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.sensor(
    job=training_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests training once an agent has an ok document in every category, and "
    "again when its dataset changes; waits until the dataset has been still for "
    "THUNDER_TRAINING_DEBOUNCE seconds (60) and no run of the agent is in flight.",
)
def training_sensor(context: dg.SensorEvaluationContext, thunder: ThunderHome) -> dg.SensorResult:
    """Reads each agent's dataset manifest and its champion's model card: what the dataset
    holds, and whether the model serving was trained on it."""
    home = thunder.home()
    debounce = float(settings.TRAINING_DEBOUNCE.value())
    requested = json.loads(context.cursor) if context.cursor else {}
    requests, waiting = [], []
    for agent_id in context.instance.get_dynamic_partitions(agents.name):
        dataset = latest_dataset(home.processed_dir(agent_id))
        if dataset is None:
            continue
        version = dataset.version
        if requested.get(agent_id) == version:
            continue
        missing = [category for category in CATEGORIES if not dataset.categories.get(category)]
        if missing:
            waiting.append(f"{agent_id}: no document yet in {', '.join(missing)}")
            continue
        if _champion_dataset(home, agent_id) == version:
            requested[agent_id] = version
            continue
        age = (datetime.now(UTC) - datetime.fromisoformat(dataset.created_at)).total_seconds()
        if age < debounce:
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


def _champion_dataset(home, agent_id: str) -> str | None:
    """The dataset version the serving champion was trained on; None without one."""
    champion = read_pointer(home.deployments_dir(agent_id))
    if champion is None:
        return None
    try:
        return ModelCard.read(champion.model_dir).dataset_version
    except UnreadableCardError:
        return None


def run_priority(priority) -> int:
    """The queue priority of a prompt's priority: a name, or (a run launched before the names)
    the number it gave."""
    return RUN_PRIORITIES[priority] if isinstance(priority, str) else int(priority)


@dg.run_status_sensor(
    run_status=dg.DagsterRunStatus.SUCCESS,
    monitored_jobs=[prompt_training_job],
    request_job=pipeline_job,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a prompt_training_job run wrote its document, runs the whole pipeline for "
    "that agent with the prompt's model family and priority.",
)
def prompt_followup_sensor(context: dg.RunStatusSensorContext):
    config = context.dagster_run.run_config["ops"]["prompt_document"]["config"]
    family = config.get("family", "auto")
    run_config = (
        {"ops": {"tpe_trials": {"config": {"families": [family]}}}} if family != "auto" else {}
    )
    return dg.RunRequest(
        run_key=f"prompt:{context.dagster_run.run_id}",
        partition_key=config["agent_id"],
        run_config=run_config,
        tags={
            "dagster/priority": str(run_priority(config.get("priority", "normal"))),
            "thunder/trigger": "prompt",
            "thunder/prompt_run": context.dagster_run.run_id,
        },
    )
