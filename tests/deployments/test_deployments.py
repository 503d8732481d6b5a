import pytest

from thunder_dagster.deployments.pointers import (
    champion_stack,
    history,
    pointer_path,
    read_pointer,
    undeployment,
)
from thunder_dagster.deployments.registry import NoRegistry
from thunder_dagster.deployments.releases import (
    DeploymentStateError,
    NothingToRollBackError,
    RollbackTargetError,
    UnverifiedArtifactError,
    promote,
    redeploy,
    release,
    retire,
    rollback,
    undeploy,
)
from thunder_dagster.deployments.versions import Version, next_version
from thunder_dagster.files import sha256_of
from thunder_dagster.modeling.cards import CardMetrics, ModelCard
from thunder_dagster.tracking.experiments import Tracker
from thunder_dagster.tracking.registry import MlflowRegistry, registered_model_name


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
    ModelCard(
        agent_id="acme",
        family=family,
        params={},
        context_length=8,
        vocab=("a",),
        metrics=CardMetrics(validation_loss=1.0, unigram_loss=2.0),
    ).write(folder)
    return folder


def test_releases_move_the_pointer_and_rollback_moves_it_back(tmp_path):
    models, deployments = tmp_path / "models", tmp_path / "deployments"
    first = build(tmp_path, "a")
    second = build(tmp_path, "b")
    third = build(tmp_path, "c", family="transformer")
    for folder in (first, second, third):
        release(models, deployments, "acme", folder, sha256_of(folder / "model.onnx"), NoRegistry())
    assert [d.version for d in champion_stack(deployments)] == ["1.0.0", "1.1.0", "2.0.0"]
    assert read_pointer(deployments).version == "2.0.0"
    card = ModelCard.read(models / "2.0.0")
    assert card.version == "2.0.0" and card.family == "transformer"
    assert rollback(deployments, NoRegistry()).deployment.version == "1.1.0"
    assert read_pointer(deployments).version == "1.1.0"
    assert rollback(deployments, NoRegistry()).deployment.version == "1.0.0"
    with pytest.raises(NothingToRollBackError):
        rollback(deployments, NoRegistry())
    assert read_pointer(deployments).version == "1.0.0"
    # The next release still gets a version never used before.
    fourth = build(tmp_path, "d")
    onnx = sha256_of(fourth / "model.onnx")
    assert release(models, deployments, "acme", fourth, onnx, NoRegistry()).deployment.version
    assert read_pointer(deployments).version == "2.1.0"


def test_a_staging_folder_left_by_a_crash_does_not_stop_the_next_release(tmp_path):
    models = tmp_path / "models"
    (models / ".1.0.0.staging").mkdir(parents=True)
    (models / "trials").mkdir()
    folder = build(tmp_path, "a")
    onnx = sha256_of(folder / "model.onnx")
    released = release(models, tmp_path / "deployments", "acme", folder, onnx, NoRegistry())
    assert released.deployment.version == "1.0.0"


def test_a_file_changed_after_its_checks_is_never_released(tmp_path):
    folder = build(tmp_path, "a")
    checked = sha256_of(folder / "model.onnx")
    (folder / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(UnverifiedArtifactError, match="materialize onnx_model again"):
        release(
            tmp_path / "models", tmp_path / "deployments", "acme", folder, checked, NoRegistry()
        )
    assert read_pointer(tmp_path / "deployments") is None
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_every_move_takes_the_pointer_and_the_registry_alias_together(tmp_path):
    models, deployments = tmp_path / "models", tmp_path / "deployments"
    tracker = Tracker(
        f"sqlite:///{tmp_path / 'mlflow.db'}", "x", (tmp_path / "art").as_uri(), print
    )
    registry = MlflowRegistry(tracker)
    name = registered_model_name("acme")

    def released(folder, role="champion", change="retrain"):
        run = tracker.start_run(folder.name, {})
        onnx = sha256_of(folder / "model.onnx")
        move = release(
            models, deployments, "acme", folder, onnx, registry, change, role, run_id=run
        )
        return move.deployment

    first = released(build(tmp_path, "a"))
    second = released(build(tmp_path, "b"))
    assert tracker.alias_version(name, "champion") == second.registry_version == "2"
    assert rollback(deployments, registry).deployment == first
    assert tracker.alias_version(name, "champion") == first.registry_version == "1"

    challenger = released(build(tmp_path, "c"), role="challenger", change="fine_tune")
    assert tracker.alias_version(name, "challenger") == challenger.registry_version
    move = promote(deployments, registry)
    assert move.deployment == challenger and move.previous == first
    assert read_pointer(deployments) == challenger
    assert read_pointer(deployments, "challenger") is None
    assert tracker.alias_version(name, "champion") == challenger.registry_version
    assert tracker.alias_version(name, "challenger") is None

    retired = released(build(tmp_path, "d"), role="challenger")
    assert retire(deployments, registry) == retired
    assert tracker.alias_version(name, "challenger") is None
    assert tracker.alias_version(name, "champion") == challenger.registry_version
    assert tracker.available, tracker.failure


def test_a_home_deployed_under_the_old_pointer_name_keeps_its_champion(tmp_path):
    models, deployments = tmp_path / "models", tmp_path / "deployments"
    folder = build(tmp_path, "a")
    release(models, deployments, "acme", folder, sha256_of(folder / "model.onnx"), NoRegistry())
    (deployments / "champion.json").rename(deployments / "current.json")
    assert pointer_path(deployments).name == "current.json"
    assert read_pointer(deployments).version == "1.0.0"
    second = build(tmp_path, "b")
    release(models, deployments, "acme", second, sha256_of(second / "model.onnx"), NoRegistry())
    assert not (deployments / "current.json").exists()
    assert read_pointer(deployments).version == "1.1.0"


def test_a_rollback_to_a_named_version_is_replayed_from_the_history(tmp_path):
    models, deployments = tmp_path / "models", tmp_path / "deployments"
    for name in "abcd":
        folder = build(tmp_path, name)
        release(models, deployments, "acme", folder, sha256_of(folder / "model.onnx"), NoRegistry())
    move = rollback(deployments, NoRegistry(), to_version="1.1.0")
    assert (move.previous.version, move.deployment.version) == ("1.3.0", "1.1.0")
    assert [d.version for d in champion_stack(deployments)] == ["1.0.0", "1.1.0"]
    with pytest.raises(NothingToRollBackError, match=r"1\.3\.0 is not an earlier champion"):
        rollback(deployments, NoRegistry(), to_version="1.3.0")
    assert rollback(deployments, NoRegistry()).deployment.version == "1.0.0"


def test_a_rollback_target_whose_files_changed_is_refused_and_nothing_moves(tmp_path):
    models, deployments = tmp_path / "models", tmp_path / "deployments"
    for name in "ab":
        folder = build(tmp_path, name)
        release(models, deployments, "acme", folder, sha256_of(folder / "model.onnx"), NoRegistry())
    (models / "1.0.0" / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(RollbackTargetError, match=r"acme 1\.0\.0: model\.onnx changed"):
        rollback(deployments, NoRegistry())
    assert read_pointer(deployments).version == "1.1.0"
    assert [d.version for d in champion_stack(deployments)] == ["1.0.0", "1.1.0"]


def test_undeploy_keeps_every_file_and_drops_the_aliases_and_redeploy_restores_them(tmp_path):
    models, deployments = tmp_path / "models", tmp_path / "deployments"
    tracker = Tracker(
        f"sqlite:///{tmp_path / 'mlflow.db'}", "x", (tmp_path / "art").as_uri(), print
    )
    registry, name = MlflowRegistry(tracker), registered_model_name("acme")
    for folder, role in ((build(tmp_path, "a"), "champion"), (build(tmp_path, "b"), "challenger")):
        run = tracker.start_run(folder.name, {})
        onnx = sha256_of(folder / "model.onnx")
        release(models, deployments, "acme", folder, onnx, registry, role=role, run_id=run)
    files = sorted(
        path for path in tmp_path.rglob("*") if path.is_file() and "mlflow" not in str(path)
    )
    marker = undeploy(deployments, registry, "cli:ops", "a recall")
    assert undeployment(deployments) == marker and marker.reason == "a recall"
    assert tracker.alias_version(name, "champion") is None
    assert tracker.alias_version(name, "challenger") is None
    assert read_pointer(deployments).version == "1.0.0"  # the pointers stay as they were
    assert set(files) <= {path for path in tmp_path.rglob("*") if path.is_file()}
    with pytest.raises(DeploymentStateError, match=r"already undeployed .* a recall"):
        undeploy(deployments, registry, "cli:ops", "again")
    moves = redeploy(deployments, registry, "cli:ops")
    assert [(m.role, m.deployment.version) for m in moves] == [
        ("champion", "1.0.0"),
        ("challenger", "1.1.0"),
    ]
    assert undeployment(deployments) is None
    assert tracker.alias_version(name, "champion") == "1"
    assert tracker.alias_version(name, "challenger") == "2"
    with pytest.raises(DeploymentStateError, match="is deployed: nothing to redeploy"):
        redeploy(deployments, registry, "cli:ops")
    assert [e["action"] for e in history(deployments)][-2:] == ["undeploy", "redeploy"]


def test_a_redeploy_whose_champion_files_are_gone_is_refused_and_stays_undeployed(tmp_path):
    models, deployments = tmp_path / "models", tmp_path / "deployments"
    folder = build(tmp_path, "a")
    release(models, deployments, "acme", folder, sha256_of(folder / "model.onnx"), NoRegistry())
    undeploy(deployments, NoRegistry(), "cli:ops", "moving disks")
    (models / "1.0.0" / "model.onnx").unlink()
    with pytest.raises(RollbackTargetError, match=r"model\.onnx is gone"):
        redeploy(deployments, NoRegistry(), "cli:ops")
    assert undeployment(deployments).reason == "moving disks"
    # A marker someone garbled still undeploys: its presence is what counts.
    (deployments / "undeployed.json").write_text("{not json")
    assert "unreadable" in undeployment(deployments).reason
