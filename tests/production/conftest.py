"""The production profile against the real services: fresh PostgreSQL databases and a Redis
database of their own for each test, the profile's environment pointed at them."""

import contextlib
import os
import shutil

import dagster as dg
import pytest

from tests.factories import REPO_ROOT
from tests.processes import BIN
from tests.services import postgres_database

REDIS_TEST_DB = 15


def flush_redis(url: str) -> None:
    import redis

    try:
        redis.Redis.from_url(url).flushdb()
    except redis.exceptions.ConnectionError as error:
        pytest.fail(f"Redis at {url} is not reachable ({error}); start it (bash .ci/run does)")


@pytest.fixture
def profile_env(home, monkeypatch):
    """The variables of deploy/profile.env, on fresh databases; set in this process too."""
    with contextlib.ExitStack() as stack:
        urls = {
            name: stack.enter_context(postgres_database())
            for name in ("THUNDER_DAGSTER_PG_URL", "THUNDER_OPTUNA_URL", "THUNDER_QUERY_DB_URL")
        }
        broker = f"redis://127.0.0.1:6379/{REDIS_TEST_DB}"
        flush_redis(broker)
        env = {
            **urls,
            # MLflow in the tests: its SQLite store under THUNDER_HOME (the server is tested
            # by test_the_main_job_runs_on_the_profile).
            "THUNDER_MLFLOW_DB_URL": f"sqlite:///{home.mlflow_dir / 'mlflow.db'}",
            "MLFLOW_TRACKING_URI": f"sqlite:///{home.mlflow_dir / 'mlflow.db'}",
            "THUNDER_EXECUTOR": "celery",
            "THUNDER_CELERY_BROKER": broker,
            "THUNDER_CELERY_BACKEND": broker,
            "THUNDER_WORKERS": "2",
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        shutil.copyfile(REPO_ROOT / "deploy" / "dagster.yaml", home.dagster_home / "dagster.yaml")
        yield env
        flush_redis(broker)


@pytest.fixture
def pg_instance(profile_env, home):
    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:
        yield instance
