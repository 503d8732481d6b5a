import json
from datetime import UTC, datetime

import dagster as dg

from thunder_dagster import settings
from thunder_dagster.deployments.pointers import read_pointer
from thunder_dagster.documents.datasets import latest_dataset
from thunder_dagster.documents.labelled import latest_labelled
from thunder_dagster.home import CATEGORIES
from thunder_dagster.jobs.training import (
    RUN_PRIORITIES,
    classifier_job,
    classifier_pipeline_job,
    pipeline_job,
    prompt_training_job,
    training_job,
)
from thunder_dagster.modeling.cards import ModelCard, UnreadableCardError
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.tasks.agents import AgentSettingsError, read_task
from thunder_dagster.tasks.registry import task_kind

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
    decided = Decisions(context.cursor)
    for agent_id in context.instance.get_dynamic_partitions(agents.name):
        dataset = latest_dataset(home.processed_dir(agent_id))
        if dataset is None:
            continue
        try:
            if task_kind(read_task(home.agent_dir(agent_id))).model != "generator":
                continue  # classifier_sensor trains a classifier; the instruct base trains none
        except AgentSettingsError as error:
            decided.waiting.append(f"{agent_id}: {error}")
            continue
        version = dataset.version
        if decided.requested.get(agent_id) == version:
            continue
        missing = [category for category in CATEGORIES if not dataset.categories.get(category)]
        if missing:
            decided.waiting.append(f"{agent_id}: no document yet in {', '.join(missing)}")
            continue
        if _champion_dataset(home, agent_id) == version:
            decided.requested[agent_id] = version
            continue
        age = (datetime.now(UTC) - datetime.fromisoformat(dataset.created_at)).total_seconds()
        if age < debounce:
            decided.waiting.append(f"{agent_id}: dataset {version} is younger than the debounce")
            continue
        tags = {"thunder/dataset_version": version, "thunder/trigger": "dataset"}
        _request(context, agent_id, version, f"train:{agent_id}:{version}", tags, decided)
    return decided.result("nothing new to train")


class Decisions:
    """A training sensor's tick: the runs it requests, the versions it has seen per agent
    (its cursor), and why the others wait."""

    def __init__(self, cursor: str | None):
        self.requested: dict[str, str] = json.loads(cursor) if cursor else {}
        self.requests: list[dg.RunRequest] = []
        self.waiting: list[str] = []

    def result(self, idle: str) -> dg.SensorResult:
        return dg.SensorResult(
            run_requests=self.requests,
            cursor=json.dumps(self.requested, sort_keys=True),
            skip_reason=None if self.requests else "; ".join(self.waiting) or idle,
        )


def _request(context, agent_id: str, version: str, key: str, tags: dict, decided) -> None:
    """A run of the agent for `version`, unless one of its runs is queued or running."""
    runs = context.instance.get_runs(
        filters=dg.RunsFilter(statuses=IN_PROGRESS, tags={"dagster/partition": agent_id}),
        limit=1,
    )
    if runs:
        decided.waiting.append(f"{agent_id}: run {runs[0].run_id[:8]} is in flight")
        return
    decided.requested[agent_id] = version
    decided.requests.append(dg.RunRequest(run_key=key, partition_key=agent_id, tags=tags))


@dg.sensor(
    job=classifier_job,
    minimum_interval_seconds=15,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Requests a classifier for each classification or sentiment agent whose "
    "labelled examples changed since its champion was trained, once no run of the agent is "
    "in flight.",
)
def classifier_sensor(context: dg.SensorEvaluationContext, thunder: ThunderHome):
    """Reads each agent's task, the manifest of its labelled examples and its champion's card."""
    home = thunder.home()
    decided = Decisions(context.cursor)
    for agent_id in context.instance.get_dynamic_partitions(agents.name):
        try:
            task = read_task(home.agent_dir(agent_id))
        except AgentSettingsError as error:
            decided.waiting.append(f"{agent_id}: {error}")
            continue
        manifest = latest_labelled(home.processed_dir(agent_id))
        if not task_kind(task).labelled or manifest is None:
            continue
        version = manifest.get("version")
        if not manifest.get("rows"):
            decided.waiting.append(f"{agent_id}: no labelled examples yet (upload a CSV or JSONL)")
            continue
        if (
            decided.requested.get(agent_id) == version
            or _champion_dataset(home, agent_id) == version
        ):
            decided.requested[agent_id] = version
            continue
        tags = {"thunder/labelled_version": version, "thunder/trigger": "labelled"}
        _request(context, agent_id, version, f"classifier:{agent_id}:{version}", tags, decided)
    return decided.result("no classifier to train")


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
    request_jobs=[pipeline_job, classifier_pipeline_job],
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="After a prompt_training_job run wrote its document, runs the whole pipeline for "
    "that agent with the prompt's model type, family and priority: a classifier's for the "
    "classification and sentiment types, a generator's otherwise.",
)
def prompt_followup_sensor(context: dg.RunStatusSensorContext):
    config = context.dagster_run.run_config["ops"]["prompt_document"]["config"]
    family = config.get("family", "auto")
    labelled = task_kind(config.get("model_type", "generation")).labelled
    run_config = (
        {"ops": {"tpe_trials": {"config": {"families": [family]}}}}
        if family != "auto" and not labelled
        else {}
    )
    return dg.RunRequest(
        job_name=(classifier_pipeline_job if labelled else pipeline_job).name,
        run_key=f"prompt:{context.dagster_run.run_id}",
        partition_key=config["agent_id"],
        run_config=run_config,
        tags={
            "dagster/priority": str(run_priority(config.get("priority", "normal"))),
            "thunder/trigger": "prompt",
            "thunder/prompt_run": context.dagster_run.run_id,
        },
    )
