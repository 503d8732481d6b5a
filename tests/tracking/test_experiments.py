import socket
import time

from thunder_dagster.tracking.experiments import Tracker


def test_an_unreachable_mlflow_costs_one_bounded_failure_and_a_warning(tmp_path):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    warnings = []
    tracker = Tracker(
        f"http://127.0.0.1:{port}", "x", "", warnings.append, timeout_seconds=2, max_retries=0
    )
    started = time.monotonic()
    run = tracker.start_run("r", {})
    tracker.log_metrics(run, {"loss": 1.0})
    tracker.log_metrics("some-run", {"loss": 1.0})
    assert run is None and not tracker.available
    assert len(warnings) == 1 and "training goes on" in warnings[0]
    assert time.monotonic() - started < 30


def test_the_tracker_records_runs_and_registry_aliases_on_sqlite(tmp_path):
    tracker = Tracker(
        f"sqlite:///{tmp_path / 'mlflow.db'}", "x", (tmp_path / "art").as_uri(), print
    )
    run = tracker.start_run("parent", {"agent_id": "acme"})
    child = tracker.start_run("child", {}, parent=run)
    tracker.log_metrics(child, {"validation_loss": 2.0}, step=1)
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model.onnx").write_bytes(b"x")
    tracker.log_artifacts(run, tmp_path / "model", "model")
    version = tracker.register("thunder-acme", run, "model", {"semver": "1.0.0"})
    tracker.set_alias("thunder-acme", "champion", version)
    assert tracker.available, tracker.failure
    assert tracker.alias_version("thunder-acme", "champion") == version == "1"
    assert tracker.alias_version("thunder-acme", "challenger") is None


def test_a_tracking_uri_with_a_password_is_never_written_raw_to_the_run_log():
    from thunder_dagster.tracking.experiments import Tracker

    warned = []
    tracker = Tracker(
        tracking_uri="http://alice:s3cret-token@127.0.0.1:9",
        experiment="thunder-acme",
        artifact_root="",
        warn=warned.append,
        timeout_seconds=1,
        max_retries=0,
    )
    assert tracker.start_run("trial", {}) is None and not tracker.available
    (message,) = warned
    assert "s3cret-token" not in message and "alice:***@127.0.0.1:9" in message
    assert "s3cret-token" not in (tracker.failure or "")
