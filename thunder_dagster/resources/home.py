import dagster as dg
from pydantic import Field

from thunder_dagster.home import Home


class ThunderHome(dg.ConfigurableResource):
    """The state root: uploads, datasets, models, deployments and databases live under it."""

    root: str = Field(
        default="",
        description="Path of THUNDER_HOME; empty means the THUNDER_HOME environment variable, "
        "else ./.thunder",
    )

    def home(self) -> Home:
        return Home.resolve(self.root or None)
