"""Alembic environment: runs the package's migrations on the connection or URL it is given."""

from alembic import context
from sqlalchemy import create_engine

from thunder_dagster.feedback.schema import Base

connection = context.config.attributes.get("connection")


def run(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    run(connection)
else:
    with create_engine(context.config.get_main_option("sqlalchemy.url")).connect() as opened:
        run(opened)
