from pathlib import Path

import dagster as dg
from pydantic import Field

from thunder_dagster.assets.partitions import agents
from thunder_dagster.deployments.pointers import POINTER_NAMES, Deployment, read_pointer
from thunder_dagster.deployments.releases import release
from thunder_dagster.modeling.exports import ExportReport
from thunder_dagster.modeling.models import TrainedModel
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.tracking import MlflowTracking


def registered_model_name(agent_id: str) -> str:
    return f"thunder-{agent_id}"


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
    """The verified model released as a semantic version under models/<agent>/<version>/,
    registered in MLflow with its alias, and the pointer deployments/<agent>/current.json."""
    if config.role not in POINTER_NAMES:
        raise dg.Failure(f"role: {config.role!r}; use one of {', '.join(POINTER_NAMES)}")
    if not onnx_model.passed:
        failed = [check.name for check in onnx_model.checks if not check.passed]
        raise dg.Failure(f"onnx_model failed its checks {failed}: nothing is deployed")
    home = thunder.home()
    agent_id = context.partition_key
    tracker = tracking.tracker(home, context.log.warning)
    model_name = registered_model_name(agent_id)
    before = read_pointer(home.deployments_dir(agent_id))

    def register(version: str) -> str | None:
        tracker.log_artifacts(keras_model.mlflow_run_id, Path(onnx_model.onnx_path).parent, "model")
        return tracker.register(
            model_name,
            keras_model.mlflow_run_id,
            "model",
            {"semver": version, "dataset_version": keras_model.dataset_version},
        )

    released = release(
        home.models_dir(agent_id),
        home.deployments_dir(agent_id),
        agent_id,
        Path(onnx_model.onnx_path).parent,
        onnx_model.onnx_sha256,
        role=config.role,
        registry_version=register,
        step_sha256=onnx_model.step_sha256,
    )
    tracker.set_alias(model_name, config.role, released.registry_version)
    context.log.info(
        f"deployed {agent_id} {released.version} as {config.role} "
        f"(registry version {released.registry_version}); "
        f"was {before.version if before else 'none'}"
    )
    metadata = {
        "version": released.version,
        "role": config.role,
        "previous_version": before.version if before else "none",
        "family": released.family,
        "model_dir": dg.MetadataValue.path(released.model_dir),
        "pointer": dg.MetadataValue.path(str(home.deployments_dir(agent_id) / "current.json")),
        "registered_model": model_name,
        "registry_version": released.registry_version or "unregistered",
        "validation_loss": dg.MetadataValue.float(onnx_model.onnx_validation_loss),
    }
    url = tracker.run_url(keras_model.mlflow_run_id)
    if url:
        metadata["mlflow_run"] = dg.MetadataValue.url(url)
    url = tracker.model_version_url(model_name, released.registry_version)
    if url:
        metadata["mlflow_model_version"] = dg.MetadataValue.url(url)
    return dg.Output(released, metadata=metadata)
