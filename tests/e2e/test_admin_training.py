"""Training, rollback and undeploy through the admin API with a real webserver and daemon: the
run the API starts is a run of the instance (the UI's), its status is read back through the
same client, the cancel stops it, a rollback to a named version and an undeploy are seen by the
running server, and each step is in the audit log."""

import subprocess
import time
from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from tests.factories import REPO_ROOT, deploy_tiny, free_port, write
from tests.processes import BIN, kill_tree, start_daemon, stop_daemon, wait_for
from thunder_dagster.access.keys import KeyStore
from thunder_dagster.cli.main import main
from thunder_dagster.definitions import defs
from thunder_dagster.feedback.store import QueryStore
from thunder_dagster.runtime.launch import run_job
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.samples import copy_sample_agent
from thunder_dagster.serving.api.app import create_app
from thunder_dagster.serving.state import ServerSettings
from thunder_dagster.tasks.agents import write_task

pytestmark = [pytest.mark.slow, pytest.mark.integration]


def status_of(client, run_id: str) -> str:
    answer = client.get(f"/v1/admin/runs/{run_id}")
    assert answer.status_code == 200, answer.text
    return answer.json()["status"]


def finished(client, answer, tmp_path: Path) -> str:
    assert answer.status_code == 202, answer.text
    run_id = answer.json()["run_id"]
    done = {"SUCCESS", "FAILURE", "CANCELED"}
    wait_for(lambda: status_of(client, run_id) in done, 120, "not ended", tmp_path / "daemon.log")
    return status_of(client, run_id)


def answered_by(client) -> tuple[int, str]:
    body = {"prompt": "the ", "max_tokens": 2, "user_id": "u", "temperature": 0}
    answer = client.post("/v1/agents/acme/generate", json=body)
    return answer.status_code, answer.json().get("model_version") or answer.json()["detail"]


def test_runs_started_watched_and_cancelled_and_deployments_moved_through_the_api(home, tmp_path):
    acme = home.create_agent("acme")
    write(acme / "reference" / "a.txt", "the cat sat on the mat. a dog ran to the park. " * 40)
    assert run_job(defs.resolve_job_def("ingest_job"), "acme").success
    for seed in range(3):
        deploy_tiny(home, "acme", seed=seed)  # 1.0.0, 1.1.0, 1.2.0
    home.create_agent("sample")
    copy_sample_agent(home, "sample")
    home.create_agent("reviews")
    write_task(home.agent_dir("reviews"), "classification")
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions(agents.name, ["sample", "reviews"])
    port = free_port()
    log = tmp_path / "webserver.log"
    with open(log, "wb") as out:
        webserver = subprocess.Popen(
            [
                str(BIN / "dagster-webserver"),
                "-w",
                "workspace.yaml",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
            ],
            cwd=REPO_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    # The daemon's own training sensor would start a training run of the uploads first and
    # queue this one behind it: told to wait for a still dataset for a day, it stays out.
    daemon = start_daemon(tmp_path / "daemon.log", env={"THUNDER_TRAINING_DEBOUNCE": "86400"})
    settings = ServerSettings(
        deployments_root=home.root / "deployments",
        query_db_url=home.queries_db_url,
        reload_seconds=0.05,
        dagster_url=f"http://127.0.0.1:{port}",
    )
    try:
        with TestClient(create_app(settings)) as client:
            # Until the webserver answers, the API says so with a 503.
            def started():
                answer = client.post("/v1/admin/agents/sample/training", json={"minutes": 5})
                return answer if answer.status_code == 202 else None

            answer = wait_for(started, 180, "the API could not start a run", log)
            run_id = answer.json()["run_id"]
            with dg.DagsterInstance.get() as instance:
                run = instance.get_run_by_id(run_id)
                assert run.job_name == "pipeline_job"
                assert run.tags["dagster/partition"] == "sample"
            wait_for(
                lambda: status_of(client, run_id) == "STARTED",
                240,
                "the run did not start",
                tmp_path / "daemon.log",
                log,
            )
            cancelled = client.post(f"/v1/admin/runs/{run_id}/cancel")
            assert cancelled.status_code == 200
            assert cancelled.json()["status"] in {"CANCELING", "CANCELED"}
            # A step with a retry policy takes the stop request for a retry (Dagster's
            # op_execution_error_boundary), so the run may stay CANCELING: then the forced
            # cancel, as the UI offers it.
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and status_of(client, run_id) != "CANCELED":
                time.sleep(1)
            if status_of(client, run_id) != "CANCELED":
                forced = client.post(f"/v1/admin/runs/{run_id}/cancel", params={"force": True})
                assert forced.status_code == 200, forced.text
            wait_for(lambda: status_of(client, run_id) == "CANCELED", 60, "not cancelled", log)
            # A classification agent's training is its task's job: the classifier's graph.
            classifier = client.post("/v1/admin/agents/reviews/training", json={"minutes": 5})
            assert classifier.status_code == 202, classifier.text
            classifier_run = classifier.json()["run_id"]
            with dg.DagsterInstance.get() as instance:
                run = instance.get_run_by_id(classifier_run)
                assert run.job_name == "classifier_pipeline_job"
                assert run.tags["dagster/partition"] == "reviews"
            client.post(f"/v1/admin/runs/{classifier_run}/cancel", params={"force": True})
            refused = client.post("/v1/admin/agents/sample/training", json={"minutes": 0.01})
            assert refused.status_code == 422
            # The champion back to a named version, by a run the server then serves.
            assert answered_by(client) == (200, "1.2.0")
            rollback = client.post("/v1/admin/agents/acme/rollback", json={"to_version": "1.0.0"})
            assert finished(client, rollback, tmp_path) == "SUCCESS"
            wait_for(lambda: answered_by(client) == (200, "1.0.0"), 10, "not rolled back", log)
            wrong = client.post("/v1/admin/agents/acme/rollback", json={"to_version": "1.2.0"})
            assert finished(client, wrong, tmp_path) == "FAILURE"  # 1.2.0 is no earlier one
            assert answered_by(client) == (200, "1.0.0")
            # Undeployed: 404 with the reason; redeployed: the same champion again.
            undeploy = client.post("/v1/admin/agents/acme/undeploy", json={"reason": "recall"})
            assert finished(client, undeploy, tmp_path) == "SUCCESS"
            wait_for(lambda: answered_by(client)[0] == 404, 10, "still served", log)
            assert "undeployed" in answered_by(client)[1] and "recall" in answered_by(client)[1]
            (listed,) = [
                d for d in client.get("/v1/admin/deployments").json() if d["agent_id"] == "acme"
            ]
            assert "recall" in listed["undeployed"]
            redeploy = client.post("/v1/admin/agents/acme/redeploy")
            assert finished(client, redeploy, tmp_path) == "SUCCESS"
            wait_for(lambda: answered_by(client) == (200, "1.0.0"), 10, "not served again", log)
            assert (home.models_dir("acme") / "1.2.0" / "model.onnx").is_file()
            # The comparison, as a run of the asset the UI shows.
            compared = client.post(
                "/v1/admin/agents/acme/comparisons",
                json={"version_a": "1.0.0", "version_b": "1.2.0", "prompts": 2},
            )
            assert finished(client, compared, tmp_path) == "SUCCESS"
            with dg.DagsterInstance.get() as instance:
                key = dg.AssetKey("model_comparison")
                metadata = instance.get_latest_materialization_event(key).asset_materialization
            assert metadata.metadata["version_b"].value == "1.2.0"
            missing = client.post("/v1/admin/agents/ghost/undeploy", json={})
            assert missing.status_code == 404
            unknown = client.get("/v1/admin/runs/00000000-0000-0000-0000-000000000000")
            assert unknown.status_code == 409
        # With a webserver configured, the CLI's runs go through it and the daemon runs them.
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("THUNDER_DAGSTER_URL", f"http://127.0.0.1:{port}")
            ingested = CliRunner().invoke(main, ["ingest", "acme"])
        assert ingested.exit_code == 0, ingested.output
        assert "ingest: run" in ingested.output and "succeeded" in ingested.output
        with dg.DagsterInstance.get() as instance:
            (through,) = instance.get_runs(
                dg.RunsFilter(tags={"thunder/agent": "acme", "thunder/launched_by": "cli"})
            )
        assert through.job_name == "ingest_job" and through.tags["dagster/partition"] == "acme"
    finally:
        stop_daemon(daemon)
        kill_tree(webserver.pid)
    with QueryStore.open(home.queries_db_url) as store:
        actions = [(e.action, e.outcome) for e in reversed(KeyStore(store.engine).audit(500))]
    assert ("training.start", "ok") in actions and ("run.cancel", "ok") in actions
    for action in ("agent.rollback", "agent.undeploy", "agent.redeploy", "agent.compare"):
        assert (action, "ok") in actions
    assert actions[-1] == ("run.read", "failed")  # the unknown run
