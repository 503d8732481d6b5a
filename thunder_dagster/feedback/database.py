"""The query-log database: an engine for a SQLAlchemy URL (SQLite with WAL, or PostgreSQL with
pre-ping), its schema upgraded by Alembic to the newest migration under migrations/."""

import logging
import threading
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, inspect

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision under migrations/versions; a test holds it to Alembic's own head.
HEAD_REVISION = "0009"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets the server write while Dagster reads; a busy writer waits instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def current_revision(engine: Engine) -> str | None:
    if not inspect(engine).has_table("alembic_version"):
        return None
    with engine.connect() as connection:
        return connection.exec_driver_sql("SELECT version_num FROM alembic_version").scalar()


_MIGRATION_LOCK = threading.Lock()


def migrate(engine: Engine) -> None:
    """Upgrade the database behind `engine` to the newest Alembic revision.

    A database already at HEAD_REVISION is left alone without importing Alembic, which would
    cost the model server most of its start-up time.
    """
    if current_revision(engine) == HEAD_REVISION:
        return
    from alembic import command
    from alembic.config import Config
    from sqlalchemy.exc import DBAPIError

    # Alembic's progress lines are INFO on its own loggers; keep them off the host
    # application's handlers (a server's access log, a CLI's captured stderr).
    logging.getLogger("alembic").propagate = False
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    # Alembic's migration context is module state: one upgrade at a time in a process.
    with _MIGRATION_LOCK:
        try:
            with engine.begin() as connection:
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
        except DBAPIError:
            # Another process created the tables first (two servers started on a new store):
            # what it made is what this upgrade would have made.
            if current_revision(engine) != HEAD_REVISION:
                raise


def timeouts(url: str, statement_seconds: float | None) -> dict:
    """PostgreSQL's connect timeout (THUNDER_DB_TIMEOUT_SECONDS), and with `statement_seconds`
    its statement timeout: a database that hangs, rather than refuses, ends a call in time."""
    from thunder_dagster import settings

    if not url.startswith("postgresql"):
        return {}
    seconds = settings.whole_number(settings.DB_TIMEOUT_SECONDS)
    arguments: dict = {"connect_timeout": seconds}
    if statement_seconds:
        arguments["options"] = f"-c statement_timeout={int(statement_seconds * 1000)}"
    return {"connect_args": arguments}


def open_engine(url: str, statement_seconds: float | None = None) -> Engine:
    """An engine for `url`, its database upgraded to HEAD_REVISION; on PostgreSQL, connects
    and (with `statement_seconds`) statements that take longer fail instead of hanging."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url, pool_pre_ping=not url.startswith("sqlite"), **timeouts(url, statement_seconds)
    )
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    migrate(engine)
    return engine
