"""The code location's resources, built once for definitions.py and for the tests."""

from thunder_dagster.resources.alerting import AlertingResource
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore
from thunder_dagster.resources.retrieval import SentenceEncoderResource
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.resources.tuning import TuningStorage


def build_resources(root: str = "") -> dict:
    """Every resource, all on the THUNDER_HOME at `root` (empty: THUNDER_HOME, else ./.thunder)."""
    thunder = ThunderHome(root=root)
    return {
        "thunder": thunder,
        "tracking": MlflowTracking(thunder=thunder),
        "tuning": TuningStorage(thunder=thunder),
        "queries": QueryLogStore(thunder=thunder),
        "encoder": SentenceEncoderResource(thunder=thunder),
        "alerting": AlertingResource(),
    }
