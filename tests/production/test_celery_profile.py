"""`thunder prod run` for real: Dagster on PostgreSQL, the steps on two Celery workers over
Redis, MLflow as a server on PostgreSQL; one worker's step process is killed mid-step."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from tests.factories import REPO_ROOT, SEARCH_STEP, free_port
from tests.processes import wait_for
from tests.services import SERVICES, postgres_database

pytestmark = [pytest.mark.slow, pytest.mark.integration, SERVICES]
STEP_MESSAGE = f"Executing steps {SEARCH_STEP}["
TRIALS = 3
# A killed trial goes stale after 6 s without a heartbeat (30 s by default), fails and is queued
# again for a live step. The budget is work (trials of one epoch, one epoch of final training)
# with minutes that never bind: the steps finish the study's trials however long that takes.
STALE_SECONDS = "6"
PROD_RUN = ["prod", "run", "--trials", str(TRIALS), "--minutes", "10", "--epochs", "1"]


def worker_main_process(hostname: str) -> psutil.Process:
    """The Celery worker whose --hostname expands to `hostname` (name@host)."""
    name = hostname.split("@")[0]
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "thunder_dagster.runtime.celery_app" in cmdline and f"{name}@%h" in cmdline:
            if process.parent() and "thunder_dagster.runtime.celery_app" not in (
                process.parent().cmdline() or []
            ):
                return process
    raise AssertionError(f"no worker process for {hostname}")


def worker_of(event) -> str:
    return event.dagster_event.engine_event_data.metadata["Celery worker"].value


def test_the_main_job_runs_on_two_workers_and_a_killed_step_moves_to_the_other(
    profile_env, pg_instance, home, tmp_path, monkeypatch
):
    port = free_port()
    with postgres_database() as mlflow_db:
        env = {
            **os.environ,
            "THUNDER_MLFLOW_DB_URL": mlflow_db,
            "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{port}",
            "THUNDER_TRIAL_STALE_SECONDS": STALE_SECONDS,
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

            def search_started():
                """The engine events of search steps handed to a worker, oldest first."""
                records = pg_instance.get_records_for_run(
                    run_id=runs[0].run_id if (runs := pg_instance.get_runs()) else "none",
                    of_type=dg.DagsterEventType.ENGINE_EVENT,
                ).records
                return [
                    r.event_log_entry
                    for r in records
                    if STEP_MESSAGE in (r.event_log_entry.message or "")
                ]

            # Two search steps, one on each worker, run trials of the one study.
            first, second = wait_for(
                lambda: len(started := search_started()) >= 2 and started,
                300,
                "two search steps never started on the workers",
                log,
            )
            hostname = worker_of(first)
            assert worker_of(second) != hostname
            # The worker stops taking work, then the process running the step dies, as under
            # the OOM killer: the step's message goes back to the queue for the other worker.
            from thunder_dagster.runtime.celery_app import app

            app.control.cancel_consumer("dagster", destination=[hostname], reply=True, timeout=10)
            time.sleep(4)  # well inside the search: the first trials are training
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
        # The killed step ran again, on the other worker.
        executions = search_started()
        killed = [e for e in executions if e.step_key == first.step_key]
        assert [worker_of(e) for e in killed] == [hostname, worker_of(second)]
        # Together the steps finished exactly the study's trials: none lost with the killed
        # step, none run twice.
        import optuna

        from thunder_dagster.modeling.tuning import counted_trials

        (study,) = optuna.get_all_study_summaries(profile_env["THUNDER_OPTUNA_URL"])
        assert (
            counted_trials(
                optuna.load_study(
                    study_name=study.study_name, storage=profile_env["THUNDER_OPTUNA_URL"]
                )
            )
            == TRIALS
        )
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
            "tpe_trials.plan_search",
            f"{SEARCH_STEP}[0]",
            f"{SEARCH_STEP}[1]",
            "tpe_trials.collect_search",
            "keras_model",
            "onnx_model",
            "deployment",
        } <= step_workers
        current = json.loads((home.deployments_dir("sample") / "champion.json").read_text())
        assert current["version"] == "1.0.0"
        # The MLflow server (stopped with the profile) kept the registry in PostgreSQL.
        import mlflow

        client = mlflow.MlflowClient(mlflow_db)
        assert client.get_model_version_by_alias("thunder-sample", "champion").version
        assert "MLflow at http://127.0.0.1:" in output
