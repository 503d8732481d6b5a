from datetime import UTC, datetime, timedelta
from typing import Literal

import dagster as dg
from pydantic import Field

from thunder_dagster.deployments.releases import (
    NothingToRollBackError,
    RollbackTargetError,
    rollback,
)
from thunder_dagster.files import write_atomically
from thunder_dagster.home import InvalidAgentIdError, validate_agent_id
from thunder_dagster.modeling.space import FAMILIES
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.runtime.errors import failing_on
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.runtime.policies import RUN_RETRY_TAGS

training_job = dg.define_asset_job(
    name="training_job",
    selection=dg.AssetSelection.groups("training", "deployment"),
    description="An agent's dataset to TPE trials, the final Keras model, the verified ONNX "
    "artifact and its deployment.",
    tags=RUN_RETRY_TAGS,
)

pipeline_job = dg.define_asset_job(
    name="pipeline_job",
    selection=dg.AssetSelection.groups("ingest", "retrieval", "training", "deployment"),
    description="The whole graph for one agent: uploads to a deployed model and its "
    "retrieval index.",
    tags=RUN_RETRY_TAGS,
)

# Of a training budget in minutes, the search takes this share and the final training the rest.
SEARCH_SHARE = 0.3
# What a run needs after its final training: the ONNX export, its checks and the deployment
# (about 10 s for the default search's models on two cores).
WRAP_UP_SECONDS = 12.0


def training_ops(
    trials: int | None,
    minutes: float | None,
    epochs: int | None = None,
    parallel: int | None = None,
    started: datetime | None = None,
) -> dict:
    """Run config for the training assets: 30% of the minutes search, 70% train the best.

    The final training continues the best trial's model, so the search's best minutes are not
    lost; the other trials' are, and the short budgets leave most time to the winner.
    `parallel` search steps share the study (and each has the search's minutes). With
    `started` (when the run was asked for), the minutes are the whole run's: the search ends
    at its share of them and the final training early enough for the export and deployment,
    so the run's start-up, ingest and wrap-up come out of the budget instead of overrunning
    it. The CLI, the benchmarks and launchpad users who want the split all build it here.
    """
    search, final = {}, {}
    if trials is not None:
        search["trials"] = trials
    if minutes is not None:
        search["minutes"] = round(minutes * SEARCH_SHARE, 3)
        final["minutes"] = round(minutes * (1 - SEARCH_SHARE), 3)
        if started is not None:
            training = minutes * 60 - WRAP_UP_SECONDS
            ends = (
                started + timedelta(seconds=training * SEARCH_SHARE),
                started + timedelta(seconds=training),
            )
            search["finish_by"], final["finish_by"] = (moment.isoformat() for moment in ends)
    if epochs is not None:
        search["epochs"] = epochs
    if parallel is not None:
        search["parallel"] = parallel
    return {"tpe_trials": {"config": search}, "keras_model": {"config": final}}


def _agent(agent_id: str) -> str:
    try:
        return validate_agent_id(agent_id)
    except InvalidAgentIdError as error:
        raise dg.Failure(f"agent_id: {error}") from error


class RollbackConfig(dg.Config):
    agent_id: str = Field(description="The agent whose champion goes back")
    to_version: str | None = Field(
        default=None,
        description="An earlier champion's version to return to; empty: the one before",
    )


@dg.op
def roll_back_champion(
    context: dg.OpExecutionContext,
    config: RollbackConfig,
    thunder: ThunderHome,
    tracking: MlflowTracking,
) -> str:
    """Move the agent's champion pointer and alias back: one version, or to `to_version`."""
    home = thunder.home()
    agent_id = _agent(config.agent_id)
    registry = tracking.registry(tracking.tracker(context.log.warning))
    with failing_on(NothingToRollBackError, RollbackTargetError):
        move = rollback(home.deployments_dir(agent_id), registry, config.to_version)
    context.log.info(f"rolled back {move.describe()}")
    current, previous = move.previous, move.deployment
    context.add_output_metadata(
        {"from_version": current.version, "to_version": previous.version, "agent_id": agent_id}
    )
    return previous.version


@dg.job(
    description="Move an agent's champion pointer and MLflow alias back, one version or to a "
    "named earlier champion."
)
def rollback_job():
    roll_back_champion()


class PromptTrainingConfig(dg.Config):
    agent_id: str = Field(description="The agent to train")
    prompt_text: str = Field(description="Text the agent should learn; it becomes a document")
    family: Literal[("auto", *FAMILIES)] = Field(
        default="auto", description="Model family to train; auto searches all of them"
    )
    priority: int = Field(
        default=0, ge=-10, le=10, description="Run priority in the queue; higher starts sooner"
    )


@dg.op
def prompt_document(
    context: dg.OpExecutionContext, config: PromptTrainingConfig, thunder: ThunderHome
) -> str:
    """Write the prompt as a reference document of the agent, for the pipeline to learn."""
    agent_id = _agent(config.agent_id)
    if not config.prompt_text.strip():
        raise dg.Failure("prompt_text is empty: give the text the agent should learn")
    home = thunder.home()
    home.create_agent(agent_id)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S_%fZ")
    path = home.category_dir(agent_id, "reference") / f"prompt_{stamp}.txt"
    write_atomically(path, config.prompt_text.encode("utf-8"))
    if not context.instance.has_dynamic_partition(agents.name, agent_id):
        context.instance.add_dynamic_partitions(agents.name, [agent_id])
    context.log.info(f"prompt written to {path}; prompt_followup_sensor starts the pipeline")
    context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})
    return str(path)


@dg.job(
    description="Turn a prompt into a reference document of an agent and train it, with a "
    "chosen model family and run priority."
)
def prompt_training_job():
    prompt_document()
