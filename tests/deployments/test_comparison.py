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


def test_two_classifiers_meet_the_same_labelled_texts_and_their_confusions_add_up(home):
    from tests.factories import deploy_classifier
    from thunder_dagster.deployments.classifier_comparison import (
        compare_classifiers,
        labelled_test_split,
    )
    from thunder_dagster.deployments.comparison import released_deployment
    from thunder_dagster.modeling.cards import ModelCard
    from thunder_dagster.serving.classification import classify, load_classifier

    deploy_classifier(home, "moods")
    deploy_classifier(home, "moods", seed=1)
    deploy_tiny(home, "moods")  # a generator released after them: 2.0.0
    models, deployments = home.models_dir("moods"), home.deployments_dir("moods")
    texts = [f"{word} day {n}" for n in range(12) for word in ("a lovely", "an awful")]
    labels = ["positive", "negative"] * 12
    tested, truth = labelled_test_split(texts, labels)
    assert 0 < len(tested) < len(texts) and set(truth) == {"negative", "positive"}
    assert labelled_test_split(texts, labels) == (tested, truth)  # by the texts' hashes
    compared = compare_classifiers(models, deployments, "1.0.0", "1.1.0", tested, truth, "l1")
    assert compared.labels == ("negative", "positive") and compared.test_texts == len(tested)
    for score in (compared.a, compared.b):
        deployment = released_deployment(models, deployments, score.version)
        model = load_classifier(deployment, ModelCard.read(deployment.model_dir))
        predicted = [classify(model, text)[0] for text in tested]
        right = sum(p == t for p, t in zip(predicted, truth, strict=True))
        assert score.metrics.accuracy == pytest.approx(right / len(tested))
        confusion = score.metrics.confusion
        assert sum(map(sum, confusion)) == len(tested)
        assert confusion[0][0] + confusion[1][1] == right
    header, rows = compared.confusion_header(), compared.confusion_rows()
    assert header[1:] == [f"{v}: {label}" for v in ("1.0.0", "1.1.0") for label in compared.labels]
    assert [row[0] for row in rows] == ["negative", "positive"] and len(rows[0]) == 5
    assert [
        "accuracy",
        f"{compared.a.metrics.accuracy:.4f}",
        f"{compared.b.metrics.accuracy:.4f}",
    ] in (compared.rows())
    with pytest.raises(ComparisonError, match=r"2\.0\.0 is a generation model, not a classifier"):
        compare_classifiers(models, deployments, "1.0.0", "2.0.0", tested, truth, "l1")
    with pytest.raises(
        ComparisonError, match=r"1\.0\.0 is a sentiment classifier and 2\.0\.0 a text"
    ):
        compare_versions(models, deployments, "2.0.0", "1.0.0", TEXT, "d1")
