"""The loopback services the integration tests use; .ci/run starts them when they are down."""

import contextlib
import os
import uuid

import pytest

# The modules that use PostgreSQL or Redis, or stop them, run one after another on one
# pytest-xdist worker (tests/conftest.py): one test stopping PostgreSQL never meets another's.
SERVICES = pytest.mark.xdist_group("services")

POSTGRES_ADMIN_URL = os.environ.get(
    "THUNDER_TEST_POSTGRES_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
)


@contextlib.contextmanager
def postgres_database():
    """A new, empty PostgreSQL database for one test, dropped afterwards; its URL."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    name = f"thunder_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as error:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL at {POSTGRES_ADMIN_URL} is not reachable ({error}); start it "
            "(bash .ci/run does) or set THUNDER_TEST_POSTGRES_URL"
        )
    try:
        yield make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
