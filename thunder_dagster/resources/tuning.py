import dagster as dg
from pydantic import Field

from thunder_dagster import settings
from thunder_dagster.resources.home import ThunderHome


class TuningStorage(dg.ConfigurableResource):
    """Where Optuna keeps its studies: any SQLAlchemy URL; SQLite under THUNDER_HOME by default."""

    thunder: ThunderHome
    url: str = Field(
        default="",
        description="SQLAlchemy URL of the Optuna storage; empty means the THUNDER_OPTUNA_URL "
        "environment variable, else sqlite:///$THUNDER_HOME/optuna.db. Pass a URL holding a "
        "password by EnvVar.",
    )

    def storage_url(self) -> str:
        url = self.url or settings.OPTUNA_URL.value()
        if url:
            return url
        home = self.thunder.home()
        home.root.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{home.optuna_db}"

    def display_url(self) -> str:
        """The URL without its password, for logs and metadata."""
        from sqlalchemy.engine import make_url

        return make_url(self.storage_url()).render_as_string(hide_password=True)
