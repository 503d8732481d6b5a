"""The real thing: the Dagster daemon, its sensor and its run queue, on a temporary THUNDER_HOME."""

import json
import shutil
import time
from pathlib import Path

import dagster as dg
import pytest

from tests.factories import REPO_ROOT, write
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


def test_dropped_files_become_a_dataset_through_the_daemon(home, corpus, daemon):
    agent = home.create_agent("dropbox")
    shutil.copy(corpus / "pdf" / "021-pdfa_crazyones-pdfa.pdf", agent / "work_product")
    shutil.copy(corpus / "docx" / "hdr-header-footer.docx", agent / "communication")
    write(agent / "reference" / "notes.txt", "Dough rests in the cooler overnight. " * 40)
    write(agent / "reference" / "broken.pdf", b"%PDF-1.4 not really")
    manifest = home.processed_dir("dropbox") / "dataset.json"
    wait_for(manifest.exists, DEADLINE_SECONDS, "no dataset appeared", daemon)

    dataset = json.loads(manifest.read_text())
    assert Path(dataset["path"]).is_file()
    report = json.loads(home.ingest_report_path("dropbox").read_text())
    assert report["summary"] == {"ok": 3, "labelled": 0, "empty": 0, "rejected": 1, "skipped": 0}

    with dg.DagsterInstance.from_config(str(home.dagster_home)) as instance:

        def finished_run():
            runs = instance.get_runs(dg.RunsFilter(job_name="ingest_job"))
            return runs if runs and runs[0].is_finished else None

        runs = wait_for(finished_run, 60, "the run did not finish", daemon)
        assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS]
        assert runs[0].tags["dagster/partition"] == "dropbox"
        assert runs[0].tags["dagster/sensor_name"] == "upload_sensor"
        # A later tick sees the same content and starts nothing more.
        time.sleep(6)
        assert len(instance.get_runs(dg.RunsFilter(job_name="ingest_job"))) == 1
