import json
import socket
import time

import pytest

from thunder_dagster.deployments.pointers import (
    NothingToRollBackError,
    champion_stack,
    read_pointer,
    rollback,
)
from thunder_dagster.deployments.releases import UnverifiedArtefactError, release
from thunder_dagster.deployments.versions import Version, next_version
from thunder_dagster.modeling.models import sha256_of
from thunder_dagster.tracking.experiments import Tracker


def test_versions_bump_major_for_a_new_family_minor_for_a_retrain_patch_for_a_fine_tune():
    assert next_version([], None, "gru") == Version(1, 0, 0)
    existing = [Version(1, 0, 0), Version(1, 1, 0)]
    assert next_version(existing, "gru", "gru") == Version(1, 2, 0)
    assert next_version(existing, "gru", "gru", "fine_tune") == Version(1, 1, 1)
    assert next_version(existing, "gru", "transformer") == Version(2, 0, 0)
    assert Version.parse("10.2.3") > Version.parse("9.9.9")
    with pytest.raises(ValueError, match=r"MAJOR\.MINOR\.PATCH"):
        Version.parse("v1")


def build(tmp_path, name, family="gru", onnx=b"onnx-bytes"):
    folder = tmp_path / "builds" / name
    folder.mkdir(parents=True)
    (folder / "model.keras").write_bytes(b"keras")
    (folder / "model.onnx").write_bytes(onnx + name.encode())
    (folder / "card.json").write_text(json.dumps({"family": family, "vocab": ["a"]}))
    return folder


def test_releases_move_the_pointer_and_rollback_moves_it_back(tmp_path):
    models, deployments = tmp_path / "models", tmp_path / "deployments"
    first = build(tmp_path, "a")
    second = build(tmp_path, "b")
    third = build(tmp_path, "c", family="transformer")
    for folder in (first, second, third):
        release(models, deployments, "acme", folder, sha256_of(folder / "model.onnx"))
    assert [d.version for d in champion_stack(deployments)] == ["1.0.0", "1.1.0", "2.0.0"]
    assert read_pointer(deployments).version == "2.0.0"
    card = json.loads((models / "2.0.0" / "card.json").read_text())
    assert card["version"] == "2.0.0" and card["family"] == "transformer"
    assert rollback(deployments)[1].version == "1.1.0"
    assert read_pointer(deployments).version == "1.1.0"
    assert rollback(deployments)[1].version == "1.0.0"
    with pytest.raises(NothingToRollBackError):
        rollback(deployments)
    assert read_pointer(deployments).version == "1.0.0"
    # The next release still gets a version never used before.
    fourth = build(tmp_path, "d")
    assert release(models, deployments, "acme", fourth, sha256_of(fourth / "model.onnx")).version
    assert read_pointer(deployments).version == "2.1.0"


def test_a_staging_folder_left_by_a_crash_does_not_stop_the_next_release(tmp_path):
    models = tmp_path / "models"
    (models / ".1.0.0.staging").mkdir(parents=True)
    (models / "trials").mkdir()
    folder = build(tmp_path, "a")
    released = release(
        models, tmp_path / "deployments", "acme", folder, sha256_of(folder / "model.onnx")
    )
    assert released.version == "1.0.0"


def test_a_file_changed_after_its_checks_is_never_released(tmp_path):
    folder = build(tmp_path, "a")
    checked = sha256_of(folder / "model.onnx")
    (folder / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(UnverifiedArtefactError, match="materialize onnx_model again"):
        release(tmp_path / "models", tmp_path / "deployments", "acme", folder, checked)
    assert read_pointer(tmp_path / "deployments") is None
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


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
