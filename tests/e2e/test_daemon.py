"""The real thing: the Dagster daemon, its sensor and its run queue, on a temporary THUNDER_HOME."""

import shutil
import time

import dagster as dg
import pytest

from tests.factories import REPO_ROOT
from tests.processes import start_daemon, stop_daemon, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.integration]
DEADLINE_SECONDS = 180


@pytest.fixture
def daemon(home, tmp_path):
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home.dagster_home / "dagster.yaml")
    log = tmp_path / "daemon.log"
    process = start_daemon(log, {"THUNDER_SENSOR_INTERVAL": "2"})
    try:
        yield log
    finally:
        stop_daemon(process)


def test_files_uploaded_over_http_become_a_served_agent_through_the_daemon(
    home, corpus, daemon, store
):
    """Issue 30's path: an admin key creates a chat agent, an upload key sends its files
    over HTTP, the upload sensor's run ingests and indexes them, and the agent's state, read
    over HTTP, shows each file and then the index it is served from."""
    from fastapi.testclient import TestClient

    from tests.serving.test_route_guards import keyed
    from thunder_dagster.access.keys import KeyStore
    from thunder_dagster.serving.api.app import create_app

    keys = KeyStore(store.engine)
    admin = {"Authorization": f"Bearer {keys.create('ops', ['admin', 'generate'])[1]}"}
    uploader = {"Authorization": f"Bearer {keys.create('docs', ['upload'])[1]}"}
    files = {
        "work_product/crazyones.pdf": (corpus / "pdf" / "021-pdfa_crazyones-pdfa.pdf").read_bytes(),
        "communication/header.docx": (corpus / "docx" / "hdr-header-footer.docx").read_bytes(),
        "reference/notes.txt": b"Dough rests in the cooler overnight. " * 40,
        "reference/broken.pdf": b"%PDF-1.4 not really",
    }
    with TestClient(create_app(keyed(home))) as client:
        made = client.post(
            "/v1/admin/agents", json={"id": "dropbox", "task": "chat"}, headers=admin
        )
        assert made.status_code == 201, made.text
        for target, data in files.items():
            stored = client.put(
                f"/v1/admin/agents/dropbox/documents/{target}", content=data, headers=uploader
            )
            assert stored.status_code == 200, (target, stored.text)

        def indexed():
            state = client.get("/v1/admin/agents/dropbox", headers=admin).json()
            return state if state["index"] else None

        state = wait_for(indexed, DEADLINE_SECONDS, "the agent was never indexed", daemon)
        statuses = {f"{f['category']}/{f['filename']}": f["status"] for f in state["files"]}
        assert statuses == {
            "work_product/crazyones.pdf": "ok",
            "communication/header.docx": "ok",
            "reference/notes.txt": "ok",
            "reference/broken.pdf": "rejected",
        }
        assert state["dataset_version"] and state["missing"] == []
        # It serves: the models list names it and its index answers.
        assert "dropbox" in {
            m["id"] for m in client.get("/v1/models", headers=admin).json()["data"]
        }
        found = client.post(
            "/v1/agents/dropbox/search", json={"query": "dough cooler", "k": 1}, headers=admin
        )
        assert found.status_code == 200 and found.json()["results"][0]["filename"] == "notes.txt"

    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:

        def finished_run():
            runs = instance.get_runs(dg.RunsFilter(job_name="ingest_job"))
            return runs if runs and runs[0].is_finished else None

        runs = wait_for(finished_run, 60, "the run did not finish", daemon)
        assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
        assert runs[0].tags["dagster/partition"] == "dropbox"
        assert runs[0].tags["dagster/sensor_name"] == "upload_sensor"
        # A later tick sees the same content and starts nothing more.
        count = len(runs)
        time.sleep(6)
        assert len(instance.get_runs(dg.RunsFilter(job_name="ingest_job"))) == count
