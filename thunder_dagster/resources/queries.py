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

    def open(self):
        """A QueryStore on the newest schema, to use in a `with` block that closes it."""
        from thunder_dagster.feedback.store import QueryStore

        return QueryStore.open(
            self.url or settings.QUERY_DB_URL.value() or self.thunder.home().queries_db_url
        )
