import os

import dagster as dg
from pydantic import Field

from thunder_dagster.home import Home


class QueryLogStore(dg.ConfigurableResource):
    """The query-log store the model server writes: SQLite under THUNDER_HOME by default,
    PostgreSQL (or any SQLAlchemy URL) in production."""

    url: str = Field(
        default="",
        description="SQLAlchemy URL of the query logs; empty means the THUNDER_QUERY_DB_URL "
        "environment variable (what `thunder serve` reads too), else "
        "sqlite:///$THUNDER_HOME/queries.db.",
    )

    def open(self, home: Home):
        """A QueryStore on the newest schema; close it when done."""
        from thunder_dagster.feedback.store import QueryStore

        return QueryStore.open(
            self.url or os.environ.get("THUNDER_QUERY_DB_URL") or home.queries_db_url
        )
