"""MLflow tracking and registry calls that never stop training.

Each call is bounded (MLflow's HTTP timeout and retry count are set small: its default retries
a call 7 times, about 4 minutes). The first failure is reported through `warn` and the tracker
then stays off for the rest of the step, so a server that is down costs one timeout, not one
per epoch; the caller keeps its metrics in the asset's metadata either way.
"""

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from thunder_dagster import settings

PARENT_TAG = "mlflow.parentRunId"


def shown_uri(uri: str) -> str:
    """The tracking URI as a log may show it: a password in it (an MLflow server behind basic
    authentication, a database URL) masked."""
    parts = urlsplit(uri)
    if not parts.password:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


@dataclass
class Tracker:
    tracking_uri: str
    experiment: str
    artifact_root: str
    warn: Callable[[str], None]
    ui_url: str = ""
    timeout_seconds: int = 10
    max_retries: int = 1
    failure: str | None = None
    _client: Any = field(default=None, repr=False)
    _experiment_id: str | None = None

    @property
    def available(self) -> bool:
        return self.failure is None

    def _call(self, what: str, action: Callable[[], Any]) -> Any:
        if self.failure is not None:
            return None
        try:
            return action()
        except Exception as error:
            shown = shown_uri(self.tracking_uri)
            described = str(error).replace(self.tracking_uri, shown)
            if password := urlsplit(self.tracking_uri).password:
                described = described.replace(password, "***")
            self.failure = f"{what}: {type(error).__name__}: {described}"
            self.warn(
                f"MLflow at {shown} failed ({self.failure}); training goes on "
                "without tracking for this step and keeps its metrics in the asset metadata"
            )
            return None

    def _connect(self):
        if self._client is None:
            # MLflow's INFO lines (creating its tables on a new store) are start-up noise in
            # the run's output; its warnings still show. A level the user set is kept.
            settings.configure_library(
                {
                    "MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.timeout_seconds),
                    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.max_retries),
                    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                    "MLFLOW_LOGGING_LEVEL": "WARNING",
                },
                keep=("MLFLOW_LOGGING_LEVEL",),
            )
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
            experiment = client.get_experiment_by_name(self.experiment)
            if experiment is None:
                self._experiment_id = client.create_experiment(
                    self.experiment, artifact_location=self.artifact_root or None
                )
            else:
                self._experiment_id = experiment.experiment_id
            self._client = client
        return self._client

    def start_run(self, name: str, tags: dict[str, str], parent: str | None = None) -> str | None:
        def start():
            client = self._connect()
            run_tags = {**tags, **({PARENT_TAG: parent} if parent else {})}
            return client.create_run(self._experiment_id, run_name=name, tags=run_tags).info.run_id

        return self._call("start run", start)

    def log_params(self, run_id: str | None, params: dict) -> None:
        if run_id is None:
            return
        from mlflow.entities import Param

        self._call(
            "log params",
            lambda: self._connect().log_batch(
                run_id, params=[Param(str(k), str(v)[:6000]) for k, v in params.items()]
            ),
        )

    def log_metrics(self, run_id: str | None, metrics: dict[str, float], step: int = 0) -> None:
        if run_id is None:
            return
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._call(
            "log metrics",
            lambda: self._connect().log_batch(
                run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()]
            ),
        )

    def log_artifacts(self, run_id: str | None, local_dir: Path, artifact_path: str) -> None:
        if run_id is not None:
            self._call(
                "log artifacts",
                lambda: self._connect().log_artifacts(run_id, str(local_dir), artifact_path),
            )

    def end_run(self, run_id: str | None, status: str = "FINISHED") -> None:
        if run_id is not None:
            self._call("end run", lambda: self._connect().set_terminated(run_id, status))

    def run_url(self, run_id: str | None) -> str | None:
        if run_id is None or not self.ui_url or self._experiment_id is None:
            return None
        return f"{self.ui_url.rstrip('/')}/#/experiments/{self._experiment_id}/runs/{run_id}"

    def model_version_url(self, model_name: str, version: str | None) -> str | None:
        """The registered model version's page in the MLflow UI."""
        if version is None or not self.ui_url:
            return None
        return f"{self.ui_url.rstrip('/')}/#/models/{model_name}/versions/{version}"

    def register(
        self, model_name: str, run_id: str | None, artifact_path: str, tags: dict[str, str]
    ) -> str | None:
        """A new version of the registered model from the run's artifacts; its number."""
        if run_id is None:
            return None

        def register():
            client = self._connect()
            from mlflow.exceptions import MlflowException

            try:
                client.create_registered_model(model_name)
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            source = f"{client.get_run(run_id).info.artifact_uri}/{artifact_path}"
            version = client.create_model_version(model_name, source, run_id=run_id, tags=tags)
            return str(version.version)

        return self._call("register model", register)

    def set_alias(self, model_name: str, alias: str, version: str | None) -> None:
        if version is not None:
            self._call(
                f"set alias {alias}",
                lambda: self._connect().set_registered_model_alias(model_name, alias, version),
            )

    def delete_alias(self, model_name: str, alias: str) -> None:
        def delete():
            from mlflow.exceptions import MlflowException

            try:
                self._connect().delete_registered_model_alias(model_name, alias)
            except MlflowException as error:
                if error.error_code not in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    raise

        self._call(f"delete alias {alias}", delete)

    def alias_version(self, model_name: str, alias: str) -> str | None:
        def read():
            from mlflow.exceptions import MlflowException

            try:
                return str(self._connect().get_model_version_by_alias(model_name, alias).version)
            except MlflowException as error:
                if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
                    return None
                raise

        return self._call(f"read alias {alias}", read)
