import dagster as dg
from pydantic import Field

from thunder_dagster import settings
from thunder_dagster.resources.home import ThunderHome


class QueryLogStore(dg.ConfigurableResource):
    """The query-log store the model server writes: SQLite under THUNDER_HOME by default,
    PostgreSQL (or any SQLAlchemy URL) in production."""

    thunder: ThunderHome
    url: str = Field(
        default="",
        description="SQLAlchemy URL of the query logs; empty means the THUNDER_QUERY_DB_URL "
        "environment variable (what `thunder serve` reads too), else "
        "sqlite:///$THUNDER_HOME/queries.db.",
    )

    def resolved_url(self) -> str:
        return self.url or settings.QUERY_DB_URL.value() or self.thunder.home().queries_db_url

    def shown_url(self) -> str:
        """The URL as a log or a page may show it: its password masked."""
        from sqlalchemy.engine import make_url

        return make_url(self.resolved_url()).render_as_string(hide_password=True)

    def open(self):
        """A QueryStore on the newest schema, to use in a `with` block that closes it."""
        from thunder_dagster.feedback.store import QueryStore

        return QueryStore.open(self.resolved_url())
