from pathlib import Path

import dagster as dg
from pydantic import Field

from thunder_dagster.deployments.gate import PairScores
from thunder_dagster.deployments.pointers import ROLES, Deployment, pointer_path, read_pointer
from thunder_dagster.deployments.releases import release
from thunder_dagster.documents.datasets import TrainingDataset
from thunder_dagster.modeling.models import TrainedModel
from thunder_dagster.modeling.reports import ExportReport
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.runtime.metadata import links
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.runtime.releases import test_challenger
from thunder_dagster.tracking.registry import registered_model_name


class DeploymentConfig(dg.Config):
    role: str = Field(
        default="champion",
        description=(
            "champion: serve it now, once it scores no worse than the serving champion on the "
            "same test split (else as agent.json's release.when_worse says); challenger: serve "
            "it to the A/B share only; teacher: answer in the champion's place when it is unsure"
        ),
    )


@dg.asset(
    group_name="deployment",
    kinds={"onnx", "mlflow"},
    partitions_def=agents,
)
def deployment(
    context: dg.AssetExecutionContext,
    config: DeploymentConfig,
    onnx_model: ExportReport,
    keras_model: TrainedModel,
    training_dataset: TrainingDataset,
    thunder: ThunderHome,
    tracking: MlflowTracking,
    queries: QueryLogStore,
) -> dg.Output[Deployment]:
    """The verified model released as a semantic version and served in its role.

    Its files go to models/<agent>/<version>/, a version of the MLflow registered model
    thunder-<agent> gets the role's alias, and the pointer deployments/<agent>/<role>.json
    moves, which the model server reloads. A model meant for champion passes the champion
    gate first: scored beside the serving champion on this dataset's test split, a worse one
    becomes a challenger under an A/B test, or is refused, as the agent's release policy says;
    both scores are on this page."""
    if config.role not in ROLES:
        raise dg.Failure(f"role: {config.role!r}; use one of {', '.join(ROLES)}")
    if not onnx_model.passed:
        failed = [check.name for check in onnx_model.checks if not check.passed]
        raise dg.Failure(f"onnx_model failed its checks {failed}: nothing is deployed")
    home = thunder.home()
    agent_id = context.partition_key
    role, gate = config.role, None
    if role == "champion":
        gate = _gate(home, agent_id, onnx_model, keras_model, training_dataset)
        context.log.info(f"champion gate: {gate.reason}")
        if not gate.released:
            raise dg.Failure(gate.reason, metadata=gate.metadata(), allow_retries=False)
        role = gate.role
    tracker = tracking.tracker(context.log.warning)
    registry = tracking.registry(tracker)
    move = release(
        home.models_dir(agent_id),
        home.deployments_dir(agent_id),
        agent_id,
        Path(onnx_model.onnx_path).parent,
        onnx_model.onnx_sha256,
        registry,
        role=role,
        step_sha256=onnx_model.step_sha256,
        run_id=keras_model.mlflow_run_id,
        tags={"dataset_version": keras_model.dataset_version},
    )
    released = move.deployment
    context.log.info(f"deployed {move.describe()}")
    tested = {}
    if role == "challenger" and gate is not None:
        tested = test_challenger(context, queries, gate.champion_version, released.version)
        PairScores(
            gate.champion_version,
            released.version,
            training_dataset.version,
            gate.champion_score,
            gate.candidate_score,
        ).write(home.deployments_dir(agent_id))
    metadata = {
        "version": released.version,
        "role": role,
        "previous_version": move.previous.version if move.previous else "none",
        "family": released.family,
        "model_dir": dg.MetadataValue.path(released.model_dir),
        "pointer": dg.MetadataValue.path(str(pointer_path(home.deployments_dir(agent_id), role))),
        "registered_model": registered_model_name(agent_id),
        "registry_version": released.registry_version or "unregistered",
        "test_loss": dg.MetadataValue.float(onnx_model.onnx_test_loss),
        **links(
            mlflow_run=tracker.run_url(keras_model.mlflow_run_id),
            mlflow_model_version=tracker.model_version_url(
                registered_model_name(agent_id), released.registry_version
            ),
        ),
    }
    metadata |= (gate.metadata() if gate else {}) | tested
    return dg.Output(released, metadata=metadata)


def _gate(home, agent_id: str, onnx_model, keras_model, dataset):
    """The candidate and the serving champion, each through its own vocabulary, on this
    dataset's test split; the agent's policy decides what a worse candidate becomes."""
    from thunder_dagster.deployments.gate import judge, text_loss
    from thunder_dagster.modeling.text import dataset_documents, split_documents
    from thunder_dagster.serving.sessions import verified_bytes
    from thunder_dagster.tasks.agents import AgentSettingsError, read_release_policy

    try:
        policy = read_release_policy(home.agent_dir(agent_id))
    except AgentSettingsError as error:
        raise dg.Failure(str(error), allow_retries=False) from None
    champion = read_pointer(home.deployments_dir(agent_id))
    build = Path(onnx_model.onnx_path)
    text = split_documents(dataset_documents(dataset.path), keras_model.validation_fraction).test
    candidate = text_loss(build.parent, verified_bytes(str(build), onnx_model.onnx_sha256), text)
    if champion is None:
        return judge(candidate, None, None, policy)
    serving = verified_bytes(champion.onnx_path, champion.onnx_sha256)
    return judge(
        candidate, champion.version, text_loss(Path(champion.model_dir), serving, text), policy
    )
