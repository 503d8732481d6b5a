"""The Celery app the production profile's workers run:
`celery -A thunder_dagster.runtime.celery_app worker`. It is dagster-celery's step task on an
app built from the same settings and the same environment variables as the executor
(executors.py), so both always talk to the same broker.

dagster-celery's own `dagster-celery worker start` writes the resolved broker URL, password
included, into a Python file under DAGSTER_HOME; starting Celery on this module keeps it in the
environment.
"""

import multiprocessing
import os

from celery import signals
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from thunder_dagster.runtime.executors import CELERY_SETTINGS, broker_urls

_broker, _backend = broker_urls()
app = make_app(
    CeleryExecutor.for_cli(
        broker=_broker, backend=_backend, config_source=CELERY_SETTINGS
    ).app_args()
)
execute_plan = create_task(app)


@signals.worker_process_init.connect
def allow_child_processes(**_) -> None:
    """Let a step start processes of its own, as ingest's parser pool does.

    Celery's pool processes are marked daemonic, and Python refuses to let a daemonic process
    start children ("daemonic processes are not allowed to have children"). Daemonic only means
    "killed when the parent exits"; the pool process's parent is the worker, which stops its
    pool itself, so the mark is dropped in each pool process when it starts. Celery's process
    library also leaves its own kind of authentication key there, which the standard library's
    fork server refuses to pickle; the process gets a fresh standard one.
    """
    process = multiprocessing.current_process()
    process._config["daemon"] = False
    process._config["authkey"] = multiprocessing.process.AuthenticationString(os.urandom(32))
