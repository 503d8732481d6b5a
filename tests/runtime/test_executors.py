"""THUNDER_EXECUTOR and the broker settings: the executor the code location gets, and the
errors that say what to set."""

import pytest

from thunder_dagster.runtime.executors import (
    ExecutorConfigError,
    broker_urls,
    job_executor,
    search_parallelism,
)


@pytest.fixture
def environment(monkeypatch):
    for name in ("THUNDER_EXECUTOR", "THUNDER_WORKERS", "THUNDER_CELERY_BROKER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("THUNDER_CELERY_BACKEND", raising=False)
    return monkeypatch


def test_steps_run_in_process_by_default_with_one_search_step(environment):
    assert job_executor().name == "in_process"
    environment.setenv("THUNDER_WORKERS", "4")
    assert search_parallelism() == 1


def test_the_celery_executor_takes_the_broker_and_one_search_step_per_worker(environment):
    environment.setenv("THUNDER_EXECUTOR", "celery")
    environment.setenv("THUNDER_CELERY_BROKER", "redis://127.0.0.1:6379/0")
    environment.setenv("THUNDER_WORKERS", "3")
    assert job_executor().name == "celery"
    assert broker_urls() == ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0")
    assert search_parallelism() == 3


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"THUNDER_EXECUTOR": "threads"}, "THUNDER_EXECUTOR='threads': use one of"),
        ({"THUNDER_EXECUTOR": "celery"}, "needs THUNDER_CELERY_BROKER"),
        (
            {"THUNDER_EXECUTOR": "celery", "THUNDER_CELERY_BROKER": "amqp://127.0.0.1//"},
            "THUNDER_CELERY_BACKEND is not set",
        ),
    ],
)
def test_a_wrong_setting_is_named_with_what_to_set(environment, variables, message):
    for name, value in variables.items():
        environment.setenv(name, value)
    with pytest.raises(ExecutorConfigError, match=message):
        job_executor()
