"""`thunder status`: each agent's documents, dataset, champion and challenger from its files,
the last training run and the latest trigger decision from the Dagster instance."""

import json
import shutil
from datetime import datetime

import dagster as dg
import pytest

from tests.factories import REPO_ROOT, analyse, deploy_tiny, log, thunder, write
from thunder_dagster.definitions import defs
from thunder_dagster.feedback.store import QueryStore
from thunder_dagster.runtime.launch import run_job

pytestmark = pytest.mark.clock  # the answers depend on the day or the hour


def test_status_shows_each_agent_from_its_files_and_the_instance(home):
    shutil.copyfile(REPO_ROOT / "dagster.yaml", home.dagster_home / "dagster.yaml")
    agent = home.create_agent("acme")
    write(agent / "reference" / "a.txt", "The oven is switched on forty minutes early. " * 30)
    write(agent / "reference" / "bad.docx", "not a zip")
    assert run_job(defs.resolve_job_def("ingest_job"), "acme").success
    deploy_tiny(home, "acme")
    deploy_tiny(home, "acme", role="challenger", seed=1)
    home.create_agent("empty")
    store = QueryStore.open(home.queries_db_url)
    log(store, 60, datetime(2026, 3, 3, 9), score=5)
    store.close()
    with dg.DagsterInstance.get() as instance:
        instance.add_dynamic_partitions("agents", ["acme"])
        assert analyse(home, instance, "2026-03-03").success

    result = thunder("status")
    assert result.returncode == 0, result.stderr
    header, _, acme, empty = result.stdout.splitlines()[:4]
    assert header.split()[:5] == ["agent", "documents", "dataset", "index", "champion"]
    dataset = json.loads((home.processed_dir("acme") / "dataset.json").read_text())
    assert acme.startswith("acme ")
    assert "1 ok, 1 rejected" in acme and dataset["version"][:12] in acme
    champion, challenger = (
        json.loads((home.deployments_dir("acme") / n).read_text())["version"]
        for n in ("champion.json", "challenger.json")
    )
    assert f"{champion} (gru)" in acme and f"{challenger} (gru)" in acme
    assert "pipeline_job" not in acme  # no training run yet
    assert "fine_tune (2026-03-03)" in acme
    assert empty.split()[0] == "empty" and set(empty.split()[1:]) == {"-"}

    one = thunder("status", "acme")
    assert one.returncode == 0 and "empty" not in one.stdout
    missing = thunder("status", "ghost")
    assert missing.returncode == 1 and "no folder" in missing.stderr
