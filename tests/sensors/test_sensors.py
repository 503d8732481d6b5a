import json
import os

import dagster as dg
import pytest

from tests.factories import CORPUS, write
from thunder_dagster.definitions import defs
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.runtime.launch import run_job
from thunder_dagster.sensors.failures import run_failure_sensor
from thunder_dagster.sensors.uploads import upload_sensor

pytestmark = pytest.mark.clock  # the answers depend on the day or the hour

T0 = 1_700_000_000_000_000_000


class Ticker:
    """Evaluates the upload sensor tick after tick, carrying its cursor as the daemon would."""

    def __init__(self, instance, home):
        self.instance, self.home, self.cursor = instance, home, None

    def tick(self) -> dg.SensorResult:
        context = dg.build_sensor_context(
            instance=self.instance,
            cursor=self.cursor,
            resources={"thunder": ThunderHome(root=str(self.home.root))},
        )
        result = upload_sensor(context)
        self.cursor = result.cursor
        for request in result.dynamic_partitions_requests or []:
            if isinstance(request, dg.AddDynamicPartitionsRequest):
                self.instance.add_dynamic_partitions("agents", list(request.partition_keys))
            else:
                for key in request.partition_keys:
                    self.instance.delete_dynamic_partition("agents", key)
        return result

    def settle(self) -> dg.SensorResult:
        """Two ticks: a file counts once the same size and mtime are seen twice."""
        self.tick()
        return self.tick()


@pytest.fixture
def ticker(home):
    with dg.instance_for_test() as instance:
        yield Ticker(instance, home)


def test_a_new_file_starts_one_run_and_adds_the_agent(ticker, home):
    agent = home.create_agent("acme")
    write(agent / "reference" / "a.txt", "alpha", mtime_ns=T0)
    first = ticker.tick()
    assert first.run_requests == []
    second = ticker.tick()
    (request,) = second.run_requests
    assert request.partition_key == "acme"
    assert request.run_key.startswith("acme:1:")
    assert ticker.instance.get_dynamic_partitions("agents") == ["acme"]


def test_the_same_content_on_later_ticks_starts_no_second_run(ticker, home):
    agent = home.create_agent("acme")
    write(agent / "reference" / "a.txt", "alpha", mtime_ns=T0)
    assert len(ticker.settle().run_requests) == 1
    assert ticker.tick().run_requests == []
    os.utime(agent / "reference" / "a.txt", ns=(T0 + 5, T0 + 5))  # touched, same content
    assert ticker.settle().run_requests == []


def test_a_changed_file_starts_a_new_run(ticker, home):
    agent = home.create_agent("acme")
    path = write(agent / "reference" / "a.txt", "alpha", mtime_ns=T0)
    (first,) = ticker.settle().run_requests
    write(path, "alpha, edited", mtime_ns=T0 + 10)
    assert ticker.tick().run_requests == []
    (second,) = ticker.tick().run_requests
    assert second.run_key != first.run_key and second.run_key.startswith("acme:2:")


def test_content_that_comes_back_gets_a_fresh_run_key(ticker, home):
    agent = home.create_agent("acme")
    path = write(agent / "reference" / "a.txt", "A", mtime_ns=T0)
    (first,) = ticker.settle().run_requests
    write(path, "B", mtime_ns=T0 + 1)
    ticker.settle()
    write(path, "A", mtime_ns=T0 + 2)
    (third,) = ticker.settle().run_requests
    assert third.tags["thunder/content"] == first.tags["thunder/content"]
    assert third.run_key != first.run_key


def test_a_file_still_growing_delays_the_run(ticker, home):
    agent = home.create_agent("acme")
    path = write(agent / "reference" / "big.txt", "x", mtime_ns=T0)
    ticker.tick()
    for step in range(1, 4):
        write(path, "x" * (step + 1), mtime_ns=T0 + step)
        assert ticker.tick().run_requests == []
    (request,) = ticker.tick().run_requests
    assert request.tags["thunder/files"] == "1"


def test_a_removed_file_starts_a_run_and_a_removed_agent_is_dropped(ticker, home):
    agent = home.create_agent("acme")
    write(agent / "reference" / "a.txt", "alpha", mtime_ns=T0)
    write(agent / "reference" / "b.txt", "beta", mtime_ns=T0)
    ticker.settle()
    (agent / "reference" / "b.txt").unlink()
    (request,) = ticker.tick().run_requests
    assert request.tags["thunder/files"] == "1"
    for path in sorted(agent.rglob("*"), reverse=True):
        path.rmdir() if path.is_dir() else path.unlink()
    agent.rmdir()
    result = ticker.tick()
    assert result.run_requests == []
    assert ticker.instance.get_dynamic_partitions("agents") == []
    assert json.loads(ticker.cursor) == {}


def test_a_symlink_out_of_the_folder_is_never_followed(ticker, home, tmp_path):
    agent = home.create_agent("acme")
    write(agent / "reference" / "a.txt", "alpha", mtime_ns=T0)
    (first,) = ticker.settle().run_requests
    secret = write(tmp_path / "elsewhere" / "secret.txt", "outside")
    os.symlink(secret, agent / "reference" / "escape.txt")
    assert ticker.settle().run_requests == []
    memo = json.loads(home.upload_state_path.read_text())
    assert "reference/escape.txt" not in memo["acme"]
    assert first.tags["thunder/files"] == "1"


def test_one_bad_agent_or_file_never_stops_the_tick(ticker, home):
    (home.agents_dir / "bad name!").mkdir(parents=True)
    broken = home.create_agent("broken")
    os.mkfifo(broken / "reference" / "pipe.txt")
    write(broken / "reference" / "fine.txt", "fine", mtime_ns=T0)
    good = home.create_agent("good")
    write(good / "reference" / "a.txt", "alpha", mtime_ns=T0)
    requests = ticker.settle().run_requests
    assert sorted(request.partition_key for request in requests) == ["broken", "good"]


def test_an_empty_new_agent_starts_nothing(ticker, home):
    home.create_agent("fresh")
    assert ticker.settle().run_requests == []


def test_a_failed_ingest_is_retried_by_thunder_ingest_not_by_the_sensor(ticker, home):
    agent = home.create_agent("acme")
    write(agent / "reference" / "a.txt", "alpha " * 100, mtime_ns=T0)
    write(agent / "processed", "a file where the processed folder belongs")
    (request,) = ticker.settle().run_requests
    job = defs.resolve_job_def("ingest_job")
    failed = job.execute_in_process(
        instance=ticker.instance,
        partition_key="acme",
        tags={**request.tags, "dagster/run_key": request.run_key},
        raise_on_error=False,
    )
    assert not failed.success
    # The sensor remembers it asked for this content: it does not ask again ...
    assert ticker.settle().run_requests == []
    # ... so a retry of the same content is an explicit new run (`thunder ingest acme`).
    (agent / "processed").unlink()
    retried = run_job(defs.resolve_job_def("ingest_job"), "acme", instance=ticker.instance)
    assert retried.success
    assert home.ingest_report_path("acme").exists()


def test_the_sensors_run_ends_with_the_agents_index_current_and_searchable(ticker, home):
    from thunder_dagster.retrieval.index import RetrievalIndex, pointed_version

    agent = home.create_agent("acme")
    text = (CORPUS / "text" / "tinyshakespeare.txt").read_text()[:6000]
    write(agent / "reference" / "play.txt", text, mtime_ns=T0)
    (request,) = ticker.settle().run_requests
    run = defs.resolve_job_def("ingest_job").execute_in_process(
        instance=ticker.instance,
        partition_key=request.partition_key,
        tags={**request.tags, "dagster/run_key": request.run_key},
    )
    assert run.success
    checks = {check.check_name: check.passed for check in run.get_asset_check_evaluations()}
    assert checks["retrieval_quality"] is True
    version = pointed_version(home.retrieval_dir("acme"))
    index = RetrievalIndex(home.retrieval_dir("acme") / "indexes" / version)
    assert [chunk.filename for chunk in index.chunks] == ["play.txt"] * index.manifest.chunks
    assert index.lexical_ranking("Menenius Agrippa", 1) != []


def test_a_failed_run_is_recorded_beside_the_agents_report(home):
    agent = home.create_agent("acme")
    write(agent / "reference" / "blank.txt", " ")
    with dg.instance_for_test() as instance:
        result = run_job(defs.resolve_job_def("ingest_job"), "acme", instance=instance)
        assert not result.success
        failure = next(
            event for event in result.all_events if event.event_type_value == "PIPELINE_FAILURE"
        )
        context = dg.build_run_status_sensor_context(
            sensor_name="run_failure_sensor",
            dagster_instance=instance,
            dagster_run=result.dagster_run,
            dagster_event=failure,
            resources={"thunder": ThunderHome(root=str(home.root))},
        ).for_run_failure()
        run_failure_sensor(context)
    (record,) = [
        json.loads(line) for line in home.failure_log_path("acme").read_text().splitlines()
    ]
    assert record["run_id"] == result.run_id
    assert record["agent_id"] == "acme"
    assert record["failed_steps"] == ["training_dataset"]
