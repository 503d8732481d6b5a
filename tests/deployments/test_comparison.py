"""Two versions compared on the same work: the core on released tiny models, and `thunder
compare` as a materialization the instance keeps and a run MLflow keeps."""

import dagster as dg
import pytest
from mlflow import MlflowClient

from tests.factories import PHRASES, deploy_tiny, thunder, write
from thunder_dagster.definitions import defs
from thunder_dagster.deployments.comparison import ComparisonError, compare_versions
from thunder_dagster.runtime.launch import run_job

TEXT = "".join(PHRASES[n % 3] for n in range(60))


def test_both_versions_meet_the_same_text_prompts_and_seed(home):
    deploy_tiny(home, "acme", hidden=16)
    deploy_tiny(home, "acme", seed=1, hidden=48)
    models, deployments = home.models_dir("acme"), home.deployments_dir("acme")
    first = compare_versions(models, deployments, "1.0.0", "1.1.0", TEXT, "d1", prompts=4)
    again = compare_versions(models, deployments, "1.0.0", "1.1.0", TEXT, "d1", prompts=4)
    a, b = first.a, first.b
    assert (a.version, b.version) == ("1.0.0", "1.1.0") and len(first.prompts) == 4
    assert all(prompt in TEXT for prompt in first.prompts)
    # The same seed gives each version the same answers every time.
    assert (a.samples, b.samples) == (again.a.samples, again.b.samples)
    assert len(a.samples) == len(a.confidences) == 4
    assert all(0 < c <= 1 for c in a.confidences + b.confidences)
    assert 0 < a.parameters < b.parameters and 0 < a.size_bytes < b.size_bytes
    # Untrained over 30 characters: about ln(30) nats a character, and nothing unknown.
    assert 2.5 < a.test_loss < 4.5 and a.unknown_characters == 0
    assert a.latency_ms_batch_1 > 0 and b.ms_per_character > 0
    labels = [row[0] for row in first.rows()]
    assert "test loss (nats/char)" in labels and "parameters" in labels
    with pytest.raises(ComparisonError, match="no model under models/"):
        compare_versions(models, deployments, "1.0.0", "1.4.0", TEXT, "d1")
    with pytest.raises(ComparisonError, match="give two different versions"):
        compare_versions(models, deployments, "1.0.0", "1.0.0", TEXT, "d1")


def test_thunder_compare_prints_them_side_by_side_and_the_ui_and_mlflow_keep_it(home):
    agent = home.create_agent("acme")
    write(agent / "reference" / "a.txt", "the cat sat on the mat. a dog ran to the park. " * 40)
    assert run_job(defs.resolve_job_def("ingest_job"), "acme").success
    deploy_tiny(home, "acme")
    deploy_tiny(home, "acme", seed=1, hidden=48)
    result = thunder("compare", "acme", "1.0.0", "1.1.0", "--prompts", "3")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["1.0.0", "1.1.0"]
    assert any(line.startswith("test loss (nats/char)") for line in lines)
    assert result.stdout.count("prompt: ") == 3
    with dg.DagsterInstance.get() as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("model_comparison"))
    metadata = event.asset_materialization.metadata
    assert metadata["version_b"].value == "1.1.0"
    assert "| parameters |" in metadata["side_by_side"].value
    assert metadata["confidence"].value.startswith("![answer confidence](data:image/png")
    client = MlflowClient(tracking_uri=home.mlflow_db_url)
    experiment = client.get_experiment_by_name("thunder-dagster")
    (run,) = client.search_runs([experiment.experiment_id], "tags.`thunder.kind` = 'comparison'")
    artifacts = {item.path for item in client.list_artifacts(run.info.run_id, "comparison")}
    assert artifacts == {
        f"comparison/{n}" for n in ("comparison.md", "comparison.json", "confidence.png")
    }
    assert run.data.params["version_a"] == "1.0.0"
    assert run.data.metrics["b_parameters"] > run.data.metrics["a_parameters"]
    refused = thunder("compare", "acme", "1.0.0", "9.9.9")
    assert refused.returncode == 1 and "no model under models/" in refused.stderr


def test_classifier_versions_are_refused_with_where_their_measures_are(home):
    from tests.factories import deploy_classifier

    deploy_classifier(home, "moods")
    deploy_classifier(home, "moods", seed=1)
    models, deployments = home.models_dir("moods"), home.deployments_dir("moods")
    with pytest.raises(ComparisonError, match="sentiment classifier: comparisons score text"):
        compare_versions(models, deployments, "1.0.0", "1.1.0", TEXT, "d1")
