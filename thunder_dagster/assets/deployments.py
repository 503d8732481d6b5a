from pathlib import Path

import dagster as dg
from pydantic import Field

from thunder_dagster.deployments.pointers import ROLES, Deployment, pointer_path
from thunder_dagster.deployments.releases import release
from thunder_dagster.modeling.models import TrainedModel
from thunder_dagster.modeling.reports import ExportReport
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.runtime.metadata import links
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.tracking.registry import registered_model_name


class DeploymentConfig(dg.Config):
    role: str = Field(
        default="champion",
        description=(
            "champion: serve it now; challenger: serve it to the A/B share only; teacher: "
            "answer in the champion's place when it is unsure"
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
    thunder: ThunderHome,
    tracking: MlflowTracking,
) -> dg.Output[Deployment]:
    """The verified model released as a semantic version and served in its role.

    Its files go to models/<agent>/<version>/, a version of the MLflow registered model
    thunder-<agent> gets the role's alias, and the pointer deployments/<agent>/<role>.json
    moves, which the model server reloads."""
    if config.role not in ROLES:
        raise dg.Failure(f"role: {config.role!r}; use one of {', '.join(ROLES)}")
    if not onnx_model.passed:
        failed = [check.name for check in onnx_model.checks if not check.passed]
        raise dg.Failure(f"onnx_model failed its checks {failed}: nothing is deployed")
    home = thunder.home()
    agent_id = context.partition_key
    tracker = tracking.tracker(context.log.warning)
    registry = tracking.registry(tracker)
    move = release(
        home.models_dir(agent_id),
        home.deployments_dir(agent_id),
        agent_id,
        Path(onnx_model.onnx_path).parent,
        onnx_model.onnx_sha256,
        registry,
        role=config.role,
        step_sha256=onnx_model.step_sha256,
        run_id=keras_model.mlflow_run_id,
        tags={"dataset_version": keras_model.dataset_version},
    )
    released = move.deployment
    context.log.info(f"deployed {move.describe()}")
    metadata = {
        "version": released.version,
        "role": config.role,
        "previous_version": move.previous.version if move.previous else "none",
        "family": released.family,
        "model_dir": dg.MetadataValue.path(released.model_dir),
        "pointer": dg.MetadataValue.path(
            str(pointer_path(home.deployments_dir(agent_id), config.role))
        ),
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
    return dg.Output(released, metadata=metadata)
