"""`thunder prod run` for real: Dagster on PostgreSQL, the steps on two Celery workers over
Redis, MLflow as a server on PostgreSQL; one worker's step process is killed mid-step."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from tests.conftest import REPO_ROOT
from tests.processes import wait_for
from tests.services import postgres_database

pytestmark = [pytest.mark.slow, pytest.mark.integration]
STEP_MESSAGE = "Executing steps tpe_trials in celery worker"
PROD_RUN = ["prod", "run", "--trials", "3", "--minutes", "1.0"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def worker_main_process(hostname: str) -> psutil.Process:
    """The Celery worker whose --hostname expands to `hostname` (name@host)."""
    name = hostname.split("@")[0]
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "thunder_dagster.celery_app" in cmdline and f"{name}@%h" in cmdline:
            if process.parent() and "thunder_dagster.celery_app" not in (
                process.parent().cmdline() or []
            ):
                return process
    raise AssertionError(f"no worker process for {hostname}")


def test_the_main_job_runs_on_two_workers_and_a_killed_step_moves_to_the_other(
    profile_env, pg_instance, home, tmp_path, monkeypatch
):
    port = free_port()
    with postgres_database() as mlflow_db:
        env = {
            **os.environ,
            "THUNDER_MLFLOW_DB_URL": mlflow_db,
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
        }
        log = tmp_path / "prod-run.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(Path(sys.executable).parent / "thunder"), *PROD_RUN],
                cwd=REPO_ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:

            def tpe_started():
                records = pg_instance.get_records_for_run(
                    run_id=runs[0].run_id if (runs := pg_instance.get_runs()) else "none",
                    of_type=dg.DagsterEventType.ENGINE_EVENT,
                ).records
                return [
                    r.event_log_entry
                    for r in records
                    if (r.event_log_entry.message or "").endswith(STEP_MESSAGE)
                ]

            (started,) = wait_for(tpe_started, 300, "tpe_trials never started on a worker", log)
            hostname = started.dagster_event.engine_event_data.metadata["Celery worker"].value
            # The worker stops taking work, then the process running the step dies, as under
            # the OOM killer: the step's message goes back to the queue for the other worker.
            from thunder_dagster.celery_app import app

            app.control.cancel_consumer("dagster", destination=[hostname], reply=True, timeout=10)
            time.sleep(8)  # well inside the search: the first trial is training
            (pool_process,) = worker_main_process(hostname).children()
            pool_process.send_signal(signal.SIGKILL)
            assert process.wait(timeout=480) == 0, log.read_text()[-4000:]
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)

        output = log.read_text()
        assert "demo: run" in output and "succeeded" in output
        (run,) = pg_instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        executions = tpe_started()
        workers = [
            e.dagster_event.engine_event_data.metadata["Celery worker"].value for e in executions
        ]
        assert len(workers) == 2 and workers[0] == hostname and workers[1] != hostname
        # Every step ran on a worker, none in the run's own process.
        step_workers = {
            r.event_log_entry.step_key
            for r in pg_instance.get_records_for_run(
                run_id=run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT
            ).records
            if "Executing steps" in (r.event_log_entry.message or "")
        }
        assert {
            "documents",
            "chunks",
            "training_dataset",
            "tpe_trials",
            "keras_model",
            "onnx_model",
            "deployment",
        } <= step_workers
        current = json.loads((home.deployments_dir("sample") / "current.json").read_text())
        assert current["version"] == "1.0.0"
        # The MLflow server (stopped with the profile) kept the registry in PostgreSQL.
        import mlflow

        client = mlflow.MlflowClient(mlflow_db)
        assert client.get_model_version_by_alias("thunder-sample", "champion").version
        assert "MLflow at http://127.0.0.1:" in output
