from datetime import UTC, datetime
from typing import Literal

import dagster as dg
from pydantic import Field

from thunder_dagster.deployments.releases import (
    DeploymentStateError,
    NoChallengerError,
    NothingToRollBackError,
    RollbackTargetError,
    promote,
    redeploy,
    rollback,
    undeploy,
)
from thunder_dagster.files import write_atomically
from thunder_dagster.home import InvalidAgentIdError, validate_agent_id
from thunder_dagster.modeling.space import FAMILIES
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.runtime.errors import failing_on
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.runtime.policies import RUN_RETRY_TAGS
from thunder_dagster.tasks.agents import write_task
from thunder_dagster.tasks.registry import TASKS, task_kind

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

classifier_job = dg.define_asset_job(
    name="classifier_job",
    selection=dg.AssetSelection.groups("classification"),
    description="A classification or sentiment agent's labelled examples to a searched, "
    "verified and deployed classifier on the sentence encoder.",
    tags=RUN_RETRY_TAGS,
)

classifier_pipeline_job = dg.define_asset_job(
    name="classifier_pipeline_job",
    selection=dg.AssetSelection.groups("ingest", "retrieval", "classification"),
    description="The whole graph for a classification or sentiment agent: uploads to its "
    "deployed classifier and its retrieval index.",
    tags=RUN_RETRY_TAGS,
)


comparison_job = dg.define_asset_job(
    name="comparison_job",
    selection=dg.AssetSelection.assets("model_comparison"),
    description="Two released versions of an agent side by side on the same test split, "
    "prompts and seed, in the UI and in MLflow (`thunder compare`).",
)


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


class UndeployConfig(dg.Config):
    agent_id: str = Field(description="The agent no server should answer for")
    reason: str = Field(default="undeployed by an operator", description="Kept with the marker")
    requested_by: str = Field(default="", description="Who asked (the admin API's key)")


def _requester(context: dg.OpExecutionContext, requested_by: str) -> str:
    return requested_by or context.run.tags.get("dagster/user", "") or f"run {context.run_id}"


@dg.op
def undeploy_agent(
    context: dg.OpExecutionContext,
    config: UndeployConfig,
    thunder: ThunderHome,
    tracking: MlflowTracking,
) -> str:
    """Stop serving the agent: every server answers 404 for it from its next look, and its
    MLflow serving aliases go; pointers, history and model files stay for a redeploy."""
    agent_id = _agent(config.agent_id)
    registry = tracking.registry(tracking.tracker(context.log.warning))
    with failing_on(DeploymentStateError):
        marker = undeploy(
            thunder.home().deployments_dir(agent_id),
            registry,
            _requester(context, config.requested_by),
            config.reason,
        )
    context.log.info(f"{agent_id} undeployed: {marker.reason}")
    context.add_output_metadata({"agent_id": agent_id, "by": marker.by, "reason": marker.reason})
    return marker.at


@dg.job(description="Stop serving an agent (404 from every server); nothing is deleted.")
def undeploy_job():
    undeploy_agent()


class RedeployConfig(dg.Config):
    agent_id: str = Field(description="The undeployed agent to serve again")
    requested_by: str = Field(default="", description="Who asked (the admin API's key)")


@dg.op
def redeploy_agent(
    context: dg.OpExecutionContext,
    config: RedeployConfig,
    thunder: ThunderHome,
    tracking: MlflowTracking,
) -> str:
    """Serve an undeployed agent again from the pointers it had, and put back its aliases."""
    agent_id = _agent(config.agent_id)
    registry = tracking.registry(tracking.tracker(context.log.warning))
    with failing_on(DeploymentStateError, RollbackTargetError):
        moves = redeploy(
            thunder.home().deployments_dir(agent_id),
            registry,
            _requester(context, config.requested_by),
        )
    roles = {move.role: move.deployment.version for move in moves}
    context.log.info(f"{agent_id} serves again: {roles}")
    context.add_output_metadata({"agent_id": agent_id, **roles})
    return roles["champion"]


@dg.job(description="Serve an undeployed agent again, from the versions it had.")
def redeploy_job():
    redeploy_agent()


class PromoteConfig(dg.Config):
    agent_id: str = Field(description="The agent whose challenger becomes its champion")
    reason: str = Field(default="promoted by an operator", description="Kept in the history")
    requested_by: str = Field(default="", description="Who asked (the admin API's key)")


@dg.op
def promote_challenger(
    context: dg.OpExecutionContext,
    config: PromoteConfig,
    thunder: ThunderHome,
    tracking: MlflowTracking,
    queries: QueryLogStore,
) -> str:
    """Make the agent's challenger its champion now, whatever the champion gate or its A/B
    test said: an operator's call, with who and why in the history; its running test ends
    promoted, saying so."""
    from thunder_dagster.feedback.experiments import AbTestStore

    agent_id = _agent(config.agent_id)
    by = _requester(context, config.requested_by)
    registry = tracking.registry(tracking.tracker(context.log.warning))
    with failing_on(NoChallengerError):
        move = promote(thunder.home().deployments_dir(agent_id), registry, by, config.reason)
    with queries.open() as store:
        tests = AbTestStore(store.engine)
        test = tests.running(agent_id)
        if test is not None and test.challenger_version == move.deployment.version:
            tests.end(test.id, "promoted", by, f"promoted by {by} anyway: {config.reason}")
    context.log.info(f"promoted {move.describe()} for {by}: {config.reason}")
    context.add_output_metadata(
        {"agent_id": agent_id, "champion_version": move.deployment.version, "by": by}
    )
    return move.deployment.version


@dg.job(
    description="Make an agent's challenger its champion now, whatever its A/B test says; the "
    "history says who asked and why."
)
def promote_job():
    promote_challenger()


# The run priorities a prompt may ask for, as Dagster's run queue orders runs (dagster/priority,
# higher first).
RUN_PRIORITIES = {"low": -5, "normal": 0, "high": 5}


class PromptTrainingConfig(dg.Config):
    agent_id: str = Field(description="The agent to train")
    prompt_text: str = Field(description="Text the agent should learn; it becomes a document")
    model_type: Literal[TASKS] = Field(
        default="generation",
        description="The model type, kept as the agent's task: generation, instruction "
        "and chat learn the text as a document; classification and sentiment take the text as "
        "labelled examples (CSV with text and label columns, or JSONL objects) and train a "
        "classifier",
    )
    family: Literal[("auto", *FAMILIES)] = Field(
        default="auto", description="Generator family to train; auto searches all of them"
    )
    priority: Literal["low", "normal", "high"] = Field(
        default="normal",
        description="The run priority: the training run's dagster/priority in the queue "
        "(low -5, normal 0, high 5; higher starts sooner)",
    )


@dg.op
def prompt_document(
    context: dg.OpExecutionContext, config: PromptTrainingConfig, thunder: ThunderHome
) -> str:
    """Write the prompt as a reference upload of the agent, for the pipeline to learn: a text
    document, or for a classifier labelled examples, checked before they are kept."""
    agent_id = _agent(config.agent_id)
    if not config.prompt_text.strip():
        raise dg.Failure("prompt_text is empty: give the text the agent should learn")
    home = thunder.home()
    home.create_agent(agent_id)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S_%fZ")
    folder = home.category_dir(agent_id, "reference")
    kind = task_kind(config.model_type)
    if kind.labelled:
        path = _labelled_prompt(folder, f"prompt_{stamp}", config.prompt_text, "labelled")
    elif kind.pairs and _looks_like_pairs(config.prompt_text):
        path = _labelled_prompt(folder, f"prompt_{stamp}", config.prompt_text, "pairs")
    else:
        path = folder / f"prompt_{stamp}.txt"
        write_atomically(path, config.prompt_text.encode("utf-8"))
    write_task(home.agent_dir(agent_id), config.model_type)
    if not context.instance.has_dynamic_partition(agents.name, agent_id):
        context.instance.add_dynamic_partitions(agents.name, [agent_id])
    context.log.info(f"prompt written to {path}; prompt_followup_sensor starts the pipeline")
    context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})
    return str(path)


def _first_line(text: str) -> str:
    return next((line for line in text.splitlines() if line.strip()), "").strip()


def _looks_like_pairs(text: str) -> bool:
    """Prompt and response pairs (JSONL objects, or a CSV whose header names both) rather than
    text to learn as it is."""
    first = _first_line(text)
    header = {name.strip().lower() for name in first.split(",")}
    return first.startswith("{") or {"prompt", "response"} <= header


def _labelled_prompt(folder, stem: str, text: str, kind: str):
    """Labelled examples or prompt and response pairs given as a prompt, kept as an upload:
    JSONL when the first line is an object, CSV otherwise; refused, and not kept, when they
    are not of `kind` or no row can be used."""
    from thunder_dagster.documents.labelled import SCHEMAS, LabelledFileError, read_labelled

    path = folder / f"{stem}{'.jsonl' if _first_line(text).startswith('{') else '.csv'}"
    write_atomically(path, text.encode("utf-8"))
    try:
        read = read_labelled(path)
    except LabelledFileError as error:
        path.unlink()
        raise dg.Failure(f"prompt_text: {error}") from None
    columns = " and ".join(name for name, _ in SCHEMAS[kind])
    if read.kind != kind or not read.examples:
        path.unlink()
        reasons = "; ".join(f"line {p.line}: {p.reason}" for p in read.problems[:5])
        raise dg.Failure(
            f"prompt_text: no usable row with {columns}" + (f" ({reasons})" if reasons else "")
        )
    return path


@dg.job(
    description="Turn a prompt into a reference upload of an agent and train it, with a chosen "
    "model type, model family and run priority."
)
def prompt_training_job():
    prompt_document()
