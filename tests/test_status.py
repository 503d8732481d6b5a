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
    assert header.split()[:6] == ["agent", "task", "documents", "dataset", "index", "champion"]
    dataset = json.loads((home.processed_dir("acme") / "dataset.json").read_text())
    assert acme.split()[:2] == ["acme", "generation"]
    assert "1 ok, 1 rejected" in acme and dataset["version"][:12] in acme
    champion, challenger = (
        json.loads((home.deployments_dir("acme") / n).read_text())["version"]
        for n in ("champion.json", "challenger.json")
    )
    assert f"{champion} (gru)" in acme and f"{challenger} (gru)" in acme
    assert "pipeline_job" not in acme  # no training run yet
    assert "fine_tune (2026-03-03)" in acme
    assert empty.split()[:2] == ["empty", "generation"] and set(empty.split()[2:]) == {"-"}

    one = thunder("status", "acme")
    assert one.returncode == 0 and "empty" not in one.stdout
    missing = thunder("status", "ghost")
    assert missing.returncode == 1 and "no folder" in missing.stderr


def test_status_shows_what_each_task_learns_from_and_what_answers(home):
    """A classifier's data is its labelled examples, a chat agent is answered by the instruct
    base, and an agent.json that cannot be read is a problem named with its file."""
    from thunder_dagster.documents.labelled import (
        LabelledExample,
        collect_examples,
        write_labelled,
    )
    from thunder_dagster.instruct.base import FILE_SHA256
    from thunder_dagster.status import agent_status
    from thunder_dagster.tasks.agents import settings_path, write_task

    topics = home.create_agent("topics")
    write_task(topics, "classification")
    home.processed_dir("topics").mkdir(parents=True, exist_ok=True)
    rows = [LabelledExample(f"text {n}", "a" if n % 2 else "b", n + 2) for n in range(6)]
    written = write_labelled(
        home.processed_dir("topics"),
        collect_examples("topics", [("x.csv", rows)]),
        "2026-03-03T00:00:00+00:00",
    )
    classifier = agent_status(home, "topics")
    assert classifier.task == "classification" and classifier.problems == []
    assert classifier.row()[3] == f"{written.version[:12]} (6 labelled examples)"
    write_task(home.create_agent("helper"), "chat")
    chat = agent_status(home, "helper")
    assert chat.task == "chat" and chat.champion.startswith(f"base-{FILE_SHA256[:12]} (SmolLM2")
    broken = home.create_agent("broken")
    settings_path(broken).write_text("{not json")
    unreadable = agent_status(home, "broken")
    assert unreadable.task is None and unreadable.row()[1] == "?"
    assert "agent.json" in unreadable.problems[0]
