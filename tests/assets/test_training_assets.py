import shutil

import dagster as dg
import numpy as np
import pytest
from onnx import numpy_helper

from thunder_dagster.assets.datasets import training_dataset
from thunder_dagster.assets.deployments import DeploymentConfig, deployment
from thunder_dagster.assets.documents import chunks, documents
from thunder_dagster.assets.exports import onnx_model
from thunder_dagster.assets.models import keras_model
from thunder_dagster.assets.tuning import tpe_trials
from thunder_dagster.deployments.pointers import read_pointer
from thunder_dagster.home import Home
from thunder_dagster.jobs.training import rollback_job
from thunder_dagster.modeling.cards import ModelCard
from thunder_dagster.modeling.exports import export_and_verify
from thunder_dagster.modeling.graphs import export_onnx
from thunder_dagster.modeling.text import encoded_dataset
from thunder_dagster.resources.bundle import build_resources
from thunder_dagster.samples import SAMPLE_AGENT_DIR
from thunder_dagster.serving.generation import generate
from thunder_dagster.serving.loading import load_deployed
from thunder_dagster.tracking.experiments import Tracker

ASSETS = [documents, chunks, training_dataset, tpe_trials, keras_model, onnx_model, deployment]
TINY = {
    "ops": {
        "tpe_trials": {
            "config": {
                "trials": 2,
                "epochs": 1,
                "steps_per_epoch": 15,
                "batch_size": 16,
                "validation_windows": 8,
                "families": ["gru", "conv"],
                "context_lengths": [64],
            }
        },
        "keras_model": {
            "config": {
                "epochs": 2,
                "steps_per_epoch": 20,
                "batch_size": 16,
                "validation_windows": 8,
            }
        },
    }
}


class Trained:
    def __init__(self, home: Home, instance):
        self.home = home
        self.instance = instance

    def materialize(self, selection=None):
        return dg.materialize(
            ASSETS,
            selection=selection,
            partition_key="sample",
            instance=self.instance,
            resources=self.resources(),
            run_config={
                "ops": {
                    name: config
                    for name, config in TINY["ops"].items()
                    if selection is None or name in selection
                }
            },
            raise_on_error=False,
        )

    def resources(self) -> dict:
        return build_resources(str(self.home.root))

    def tracker(self) -> Tracker:
        return self.resources()["tracking"].tracker(print)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("trained") / "thunder"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("THUNDER_HOME", str(root))
        patch.setenv("DAGSTER_HOME", str(root / "dagster"))
        home = Home.resolve(root)
        shutil.copytree(SAMPLE_AGENT_DIR, home.agent_dir("sample"))
        with dg.instance_for_test() as instance:
            instance.add_dynamic_partitions("agents", ["sample"])
            state = Trained(home, instance)
            state.first = state.materialize()
            yield state


def test_the_whole_graph_turns_sample_documents_into_a_deployed_verified_model(trained):
    result = trained.first
    assert result.success
    checks = {e.asset_check_key.name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "not_empty": True,
        "chunks_within_size": True,
        "unique_chunk_ids": True,
        "parity": True,
        "finite_outputs": True,
        "better_than_unigram": True,
        "step_parity": True,
    }
    pointer = read_pointer(trained.home.deployments_dir("sample"))
    assert pointer.version == "1.0.0"
    card = ModelCard.read(pointer.model_dir)
    assert card.context_length == 64 and card.vocab[0] == "\ufffd"
    step_files = {"step.onnx"} if card.family in ("gru", "transformer") else set()
    assert set(card.files) == {"model.keras", "model.onnx", *step_files}
    assert (pointer.step_sha256 is not None) == bool(step_files)
    assert card.onnx.test_loss < card.metrics.unigram_loss
    search = result.asset_materializations_for_node("tpe_trials")[0].metadata
    assert search["trial_states"].value == {"COMPLETE": 2}
    assert "data:image/png;base64," in search["optimization_history"].value
    model = result.asset_materializations_for_node("keras_model")[0].metadata
    assert "data:image/png;base64," in model["loss_curves"].value
    exported = result.asset_materializations_for_node("onnx_model")[0].metadata
    assert exported["onnxruntime_ms_batch_1"].value > 0
    assert exported["keras_predict_ms_batch_64"].value > 0
    tracker = trained.tracker()
    assert tracker.alias_version("thunder-sample", "champion") == pointer.registry_version == "1"
    deployed = result.asset_materializations_for_node("deployment")[0].metadata
    assert deployed["mlflow_model_version"].value.endswith("/#/models/thunder-sample/versions/1")
    sample = generate(load_deployed(trained.home.deployments_dir("sample")), "The ", 40, seed=0)
    assert len(sample.text) == 40 and 0 < sample.confidence <= 1


def test_a_rerun_resumes_the_finished_study_without_new_trials(trained):
    result = trained.materialize(selection=["tpe_trials"])
    assert result.success
    metadata = result.asset_materializations_for_node("tpe_trials")[0].metadata
    assert metadata["trials_run_now"].value == 0
    assert metadata["trial_states"].value == {"COMPLETE": 2}


def test_a_perturbed_export_fails_parity_and_blocks_the_deployment(trained, tmp_path):
    def perturbed(model, family):
        proto = export_onnx(model, family)
        largest = max(proto.graph.initializer, key=lambda tensor: int(np.prod(tensor.dims)))
        weights = numpy_helper.to_array(largest).copy()
        weights += np.random.default_rng(0).normal(0, 0.5, weights.shape).astype(weights.dtype)
        largest.CopyFrom(numpy_helper.from_array(weights, largest.name))
        return proto

    model = trained.first.output_for_node("keras_model")
    dataset = trained.first.output_for_node("training_dataset")
    data = encoded_dataset(dataset, model.validation_fraction)
    out = tmp_path / "perturbed"
    report = export_and_verify(model, data, out, with_latency=False, export=perturbed)
    checks = {check.name: check.passed for check in report.checks}
    assert checks["parity"] is False and not report.passed
    context = dg.build_asset_context(partition_key="sample", instance=trained.instance)
    resources = trained.resources()
    with pytest.raises(dg.Failure, match=r"failed its checks \['parity'"):
        deployment(
            context,
            DeploymentConfig(),
            report,
            model,
            dataset,
            resources["thunder"],
            resources["tracking"],
            resources["queries"],
        )
    assert read_pointer(trained.home.deployments_dir("sample")).version == "1.0.0"


def test_rollback_restores_the_previous_version_and_its_champion_alias(trained):
    again = trained.materialize(selection=["onnx_model", "deployment"])
    assert again.success
    deployments = trained.home.deployments_dir("sample")
    assert read_pointer(deployments).version == "1.1.0"
    tracker = trained.tracker()
    assert tracker.alias_version("thunder-sample", "champion") == "2"
    result = rollback_job.execute_in_process(
        run_config={"ops": {"roll_back_champion": {"config": {"agent_id": "sample"}}}},
        resources=trained.resources(),
        instance=trained.instance,
    )
    assert result.success and result.output_for_node("roll_back_champion") == "1.0.0"
    assert read_pointer(deployments).version == "1.0.0"
    assert trained.tracker().alias_version("thunder-sample", "champion") == "1"
    assert load_deployed(deployments).deployment.version == "1.0.0"
