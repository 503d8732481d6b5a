"""Faults the production profile survives, each against the real PostgreSQL instance and a
real daemon: a daemon restarted while uploads arrive, the host of a run dying, PostgreSQL
restarted under a run."""

import json
import os
import subprocess
import time
from pathlib import Path

import dagster as dg
import psutil
import pytest

from tests.factories import REPO_ROOT, SEARCH_STEP, write
from tests.processes import BIN, kill_tree, start_daemon, stop_daemon, wait_for
from tests.services import SERVICES
from thunder_dagster.samples import SAMPLE_AGENT_DIR, copy_sample_agent

pytestmark = [pytest.mark.slow, pytest.mark.integration, SERVICES]
# The faults are the instance's and the daemon's: steps run in the run's process here, the
# Celery workers have their own test.
# The steps of tpe_trials that run trials: tpe_trials.search_trials[0], [1], ...
IN_PROCESS = {"THUNDER_EXECUTOR": "in_process", "THUNDER_SENSOR_INTERVAL": "2"}
# A budget in work (one trial of one epoch, one epoch of final training): the restart and a
# step's retry make the run longer, never its model weaker than its checks allow.
TRAIN = ["train", "sample", "--trials", "1", "--epochs", "1", "--minutes", "5"]
# The run that dies starts at the final training (its upstream assets are built first, in a
# run of their own), so its limit need only hold the way to that step (a few seconds) and the
# retried remainder, which inherits the tag: training, export, release, about 45 s on an
# idle machine. The limit allows a machine three times slower than that.
MAX_RUNTIME_TAG, MAX_RUNTIME = "dagster/max_runtime", "150"
TRAINING_STEP = "keras_model"
SENSORS = ("upload_sensor", "training_sensor")
FINISHED = {dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}


def fast_monitoring(home) -> None:
    """The profile's instance, with the monitor polling every 2 s and slots freed after 5 s."""
    config = home.dagster_home / "dagster.yaml"
    text = config.read_text()
    for old, new in (
        ("poll_interval_seconds: 30", "poll_interval_seconds: 2"),
        ("free_slots_after_run_end_seconds: 60", "free_slots_after_run_end_seconds: 5"),
    ):
        assert old in text
        text = text.replace(old, new)
    config.write_text(text)


def step_started(instance, run_id: str, step_key: str) -> bool:
    """Whether a step whose key starts with `step_key` started (mapped steps end in [i])."""
    records = instance.get_records_for_run(
        run_id=run_id, of_type=dg.DagsterEventType.STEP_START
    ).records
    return any((r.event_log_entry.step_key or "").startswith(step_key) for r in records)


def test_a_daemon_killed_and_restarted_while_uploads_arrive_loses_none_and_runs_none_twice(
    profile_env, pg_instance, home, tmp_path
):
    log = tmp_path / "daemon.log"
    agents = ["north", "south"]
    daemon = start_daemon(log, IN_PROCESS)
    try:
        for round_ in range(3):
            for agent in agents:
                text = f"{agent} round {round_}: the proofing room runs warm today. " * 20
                write(home.agent_dir(agent) / "reference" / f"r{round_}.txt", text)
            time.sleep(4)
            # SIGKILL: no clean shutdown, the tick in flight is lost with the process.
            psutil.Process(daemon.pid).kill()
            daemon.wait()
            daemon = start_daemon(log, IN_PROCESS)

        def settled():
            runs = pg_instance.get_runs(dg.RunsFilter(job_name="ingest_job"))
            if not runs or any(run.status not in FINISHED for run in runs):
                return False
            for agent in agents:
                report = home.ingest_report_path(agent)
                if not report.exists():
                    return False
                files = {entry["path"] for entry in json.loads(report.read_text())["files"]}
                if files != {f"reference/r{i}.txt" for i in range(3)}:
                    return False
            return runs

        runs = wait_for(settled, 240, "the uploads were not all ingested", log)
        time.sleep(6)  # later ticks see nothing new
        runs = pg_instance.get_runs(dg.RunsFilter(job_name="ingest_job"))
    finally:
        stop_daemon(daemon)
    keys = [run.tags["dagster/run_key"] for run in runs]
    assert len(keys) == len(set(keys)), keys
    assert {run.status for run in runs} == {dg.DagsterRunStatus.SUCCESS}
    assert {run.tags["dagster/partition"] for run in runs} == set(agents)


def launch(*commands: list[str]) -> list[str]:
    """Dagster commands on the repo's workspace, all at once: each loads the workspace, and
    together they take the time of one. Their outputs, in order."""
    started = [
        subprocess.Popen(
            [str(BIN / command[0]), *command[1:]],
            cwd=REPO_ROOT,
            env={**os.environ, **IN_PROCESS},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for command in commands
    ]
    outputs = []
    for process in started:
        output, _ = process.communicate(timeout=180)
        assert process.returncode == 0, output[-3000:]
        outputs.append(output)
    return outputs


def pipeline(assets: tuple[str, ...], ops: dict, tags: dict) -> list[str]:
    """A launch of the pipeline's `assets` for the agent `sample`, through dagster-graphql (an
    asset selection: the CLI's op selection cannot cut the graph-backed training dataset)."""
    selector = {
        "repositoryLocationName": "thunder_dagster",
        "repositoryName": "__repository__",
        "pipelineName": "pipeline_job",
        "assetSelection": [{"path": [key]} for key in assets],
    }
    tags = {"dagster/partition": "sample", **tags}
    params = {
        "selector": selector,
        "runConfigData": {"ops": ops},
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    return [
        *("dagster-graphql", "-w", "workspace.yaml", "-p", "launchPipelineExecution"),
        *("-v", json.dumps({"executionParams": params})),
    ]


def launched(output: str) -> str:
    """The run id dagster-graphql's launch printed, or the failure with its reason."""
    (line,) = [line for line in output.splitlines() if line.startswith('{"data"')]
    result = json.loads(line)["data"]["launchPipelineExecution"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


def test_a_run_whose_host_died_ends_at_its_max_runtime_and_runs_again(
    profile_env, pg_instance, home, tmp_path
):
    fast_monitoring(home)
    home.create_agent("sample")
    copy_sample_agent(home, "sample")
    pg_instance.add_dynamic_partitions("agents", ["sample"])
    # A budget in work (one trial of one epoch, one epoch of final training) that a slower
    # machine takes longer over instead of releasing a model too weak for its checks.
    search = {"tpe_trials": {"config": {"trials": 1, "epochs": 1, "minutes": 2}}}
    training = {"keras_model": {"config": {"epochs": 1, "minutes": 2}}}
    # The final training's upstream first, in a run of its own; only the launched runs: the
    # sensors would otherwise start an ingest and a training of the same agent, which compete
    # with the retry for the training pool.
    upstream, *_ = launch(
        pipeline(("documents", "chunks", "training_dataset", "tpe_trials"), search, {}),
        *(["dagster", "sensor", "stop", sensor, "-w", "workspace.yaml"] for sensor in SENSORS),
    )
    upstream = launched(upstream)
    log = tmp_path / "daemon.log"
    daemon = start_daemon(log, IN_PROCESS)
    try:
        wait_for(
            lambda: pg_instance.get_run_by_id(upstream).status in FINISHED,
            300,
            "the final training's upstream was never built",
            log,
        )
        assert pg_instance.get_run_by_id(upstream).status == dg.DagsterRunStatus.SUCCESS
        limit = {MAX_RUNTIME_TAG: MAX_RUNTIME}
        (output,) = launch(pipeline((TRAINING_STEP, "onnx_model", "deployment"), training, limit))
        run = pg_instance.get_run_by_id(launched(output))
        wait_for(
            lambda: step_started(pg_instance, run.run_id, TRAINING_STEP),
            int(MAX_RUNTIME) - 15,
            "the run never reached its final training",
            log,
        )
        # The host dies: the daemon, the code server and the run's process, all at once.
        kill_tree(daemon.pid)
        daemon.wait()
        time.sleep(3)
        assert pg_instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED
        assert pg_instance.event_log_storage.get_concurrency_info("training").claimed_slots

        daemon = start_daemon(log, IN_PROCESS)  # the host is back

        def retried():
            children = pg_instance.get_runs(
                dg.RunsFilter(tags={"dagster/parent_run_id": run.run_id})
            )
            return children if children and children[0].status in FINISHED else None

        (retry,) = wait_for(retried, 420, "no retry of the dead run finished", log)
    finally:
        stop_daemon(daemon)
    ended = pg_instance.get_run_by_id(run.run_id)
    assert ended.status in {dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED}
    messages = [
        record.event_log_entry.message or ""
        for record in pg_instance.get_records_for_run(run_id=run.run_id).records
    ]
    assert any(f"maximum runtime of {MAX_RUNTIME} seconds" in message for message in messages)
    failures = [
        f"{r.event_log_entry.step_key}: {r.event_log_entry.dagster_event.event_specific_data}"
        for r in pg_instance.get_records_for_run(
            run_id=retry.run_id, of_type=dg.DagsterEventType.STEP_FAILURE
        ).records
    ]
    took = pg_instance.get_run_record_by_id(retry.run_id)
    assert retry.status == dg.DagsterRunStatus.SUCCESS, (took.end_time - took.start_time, failures)
    assert json.loads((home.deployments_dir("sample") / "champion.json").read_text())["version"]
    # The dead run's slot in the training pool was given back.
    wait_for(
        lambda: pg_instance.event_log_storage.get_concurrency_info("training").claimed_slots == [],
        30,
        "the dead run's training slot was never freed",
        log,
    )


def leftovers(root: Path) -> list[Path]:
    """Half-written files: the temporaries of atomic writes and unfinished release folders."""
    return [
        path for path in root.rglob(".*") if ".tmp-" in path.name or path.name.endswith(".staging")
    ]


def test_postgres_restarted_under_a_run_leaves_nothing_half_written(
    profile_env, pg_instance, home, tmp_path
):
    assert SAMPLE_AGENT_DIR.is_dir()
    home.create_agent("sample")
    copy_sample_agent(home, "sample")
    log = tmp_path / "train.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(BIN / "thunder"), *TRAIN],
            cwd=REPO_ROOT,
            env={**os.environ, **IN_PROCESS},
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        run = wait_for(lambda: (pg_instance.get_runs() or [None])[0], 120, "no run", log)
        wait_for(
            lambda: step_started(pg_instance, run.run_id, SEARCH_STEP),
            180,
            "the run never reached a search step",
            log,
        )
        version = os.listdir("/etc/postgresql")[0]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
            check=True,
            timeout=120,
        )
        code = process.wait(timeout=420)
    finally:
        if process.poll() is None:
            process.kill()
    output = log.read_text()
    # The run rides the restart out: Dagster's storage retries its connections, the search's
    # pool tests each before use, and a step that still meets the outage is retried.
    assert code == 0, output[-4000:]
    assert pg_instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.SUCCESS
    assert leftovers(home.root) == []
    deployed = json.loads((home.deployments_dir("sample") / "champion.json").read_text())
    assert (home.root / "models" / "sample" / deployed["version"]).is_dir()
    manifest = home.processed_dir("sample") / "dataset.json"
    assert Path(json.loads(manifest.read_text())["path"]).is_file()
