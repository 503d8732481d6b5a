"""Where a run's steps execute: in the run's own process (the embedded default) or on Celery
workers (the production profile), chosen by THUNDER_EXECUTOR when the code location loads.

The broker and result-backend URLs are read from the environment, by the run that submits the
steps and by the workers alike, so a password in them never lands in run config or a file.
"""

import dagster as dg

from thunder_dagster import settings

EXECUTORS = ("in_process", "celery")
BROKER_ENV = settings.CELERY_BROKER.name
BACKEND_ENV = settings.CELERY_BACKEND.name

# Four hours: longer than any step's budget. With Redis, a step whose message is not
# acknowledged within this time is delivered again, also to a second worker while the first
# still runs it; so it bounds a step's run time, and it is how long the step of a worker whose
# whole host died waits before another worker takes it (RabbitMQ redelivers at once).
VISIBILITY_TIMEOUT_SECONDS = 4 * 3600

# Settings of the Celery app, the same for the executor and for the workers (celery_app.py).
CELERY_SETTINGS = {
    # A step's message is acknowledged when the step ends, not when it starts, and a worker
    # process that dies mid-step (kill -9, the OOM killer) gives it back to the queue: another
    # worker runs the step again and the run goes on.
    "task_acks_late": True,
    "task_reject_on_worker_lost": True,
    # One step at a time per worker process, and no step reserved while one runs.
    "worker_prefetch_multiplier": 1,
    "worker_concurrency": 1,
    "broker_connection_retry_on_startup": True,
    "broker_transport_options": {
        "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
        # dagster-celery's defaults for publishing: a few fast retries, then fail the run.
        "max_retries": 3,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    },
    "result_expires": 24 * 3600,
}


class ExecutorConfigError(ValueError):
    """THUNDER_EXECUTOR or the broker settings it needs are wrong; the message says what to set."""


def executor_name() -> str:
    name = settings.EXECUTOR.value()
    if name not in EXECUTORS:
        raise ExecutorConfigError(
            f"THUNDER_EXECUTOR={name!r}: use one of {', '.join(EXECUTORS)} (in_process runs "
            "steps in the run's process; celery sends them to workers, see docs/DEPLOYMENT.md)"
        )
    return name


def search_parallelism() -> int:
    """The default number of `tpe_trials` search steps: one per Celery worker (THUNDER_WORKERS)
    on the production profile, one in process, where steps run one after the other."""
    workers = settings.WORKERS.value()
    if executor_name() != "celery" or not workers.isdigit() or int(workers) < 1:
        return 1
    return int(workers)


def broker_urls() -> tuple[str, str]:
    """The broker and result-backend URLs; the backend defaults to the broker (Redis)."""
    broker = settings.CELERY_BROKER.value()
    if not broker:
        raise ExecutorConfigError(
            f"THUNDER_EXECUTOR=celery needs {BROKER_ENV}, the broker's URL, for example "
            "redis://127.0.0.1:6379/0 or amqp://guest@127.0.0.1:5672//"
        )
    backend = settings.CELERY_BACKEND.value()
    if not backend:
        if not broker.startswith(("redis://", "rediss://")):
            raise ExecutorConfigError(
                f"{BACKEND_ENV} is not set and the broker {broker.split('://')[0]}:// cannot "
                "hold results: set it, for example to redis://127.0.0.1:6379/1"
            )
        backend = broker
    return broker, backend


def job_executor() -> dg.ExecutorDefinition:
    if executor_name() == "in_process":
        # Parsing is already isolated in worker processes, and a process per step would cost
        # an interpreter start-up each on two cores.
        return dg.in_process_executor
    from dagster_celery import celery_executor

    broker_urls()  # fail at load with what to set, not at the first run
    return celery_executor.configured(
        {
            "broker": {"env": BROKER_ENV},
            "backend": {"env": BACKEND_ENV}
            if settings.CELERY_BACKEND.is_set()
            else {"env": BROKER_ENV},
            "config_source": CELERY_SETTINGS,
        },
        name="celery",
    )
