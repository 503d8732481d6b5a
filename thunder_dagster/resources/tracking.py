import dagster as dg
from pydantic import Field

from thunder_dagster import settings
from thunder_dagster.deployments.registry import ModelRegistry
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.tracking.experiments import Tracker
from thunder_dagster.tracking.registry import MlflowRegistry


class MlflowTracking(dg.ConfigurableResource):
    """MLflow tracking and model registry; by default SQLite and files under THUNDER_HOME/mlflow.

    A thin resource over MlflowClient rather than dagster-mlflow's `mlflow_tracking`: that one
    opens a global active run when a step starts and closes it when the step ends, which leaves
    no room for a child run per trial, and it retries a dead server for minutes.
    """

    thunder: ThunderHome
    tracking_uri: str = Field(
        default="",
        description="MLflow tracking URI (also the registry); empty means the "
        "MLFLOW_TRACKING_URI environment variable, else sqlite:///$THUNDER_HOME/mlflow/mlflow.db. "
        "Pass a URI holding a password by EnvVar.",
    )
    experiment: str = Field(default="thunder-dagster", description="MLflow experiment name")
    ui_url: str = Field(
        default="http://127.0.0.1:5000",
        description="Where the MLflow UI is served, for links in the asset metadata",
    )
    timeout_seconds: int = Field(default=10, description="HTTP timeout of one MLflow call")
    max_retries: int = Field(default=1, description="HTTP retries of one MLflow call")

    def tracker(self, warn) -> Tracker:
        """A tracker for one step; `warn` hears the first failure, after which it stays off."""
        home = self.thunder.home()
        home.mlflow_dir.mkdir(parents=True, exist_ok=True)
        uri = self.tracking_uri or settings.MLFLOW_TRACKING_URI.value() or home.mlflow_db_url
        local = uri.startswith(("sqlite:", "file:")) or "://" not in uri
        return Tracker(
            tracking_uri=uri,
            experiment=self.experiment,
            artifact_root=(home.mlflow_dir / "artifacts").as_uri() if local else "",
            warn=warn,
            ui_url=self.ui_url,
            timeout_seconds=self.timeout_seconds,
            max_retries=self.max_retries,
        )

    def registry(self, tracker: Tracker) -> ModelRegistry:
        """The model registry on the same MLflow: what release, promote, retire and rollback
        move the aliases of."""
        return MlflowRegistry(tracker)
