import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import dagster as dg
from pydantic import Field

from thunder_dagster.documents.datasets import latest_dataset
from thunder_dagster.modeling.cards import ModelCard, UnreadableCardError
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.runtime.errors import failing_on
from thunder_dagster.runtime.metadata import image, links, markdown_table, tracking_state
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.tasks.registry import task_kind


class ComparisonConfig(dg.Config):
    version_a: str = Field(description="The first released version, e.g. the champion's")
    version_b: str = Field(description="The version to compare with it")
    prompts: int = Field(default=8, ge=1, le=64, description="Prompts cut from the test text")
    seed: int = Field(default=0, description="Seed of the sampling, the same for both")
    temperature: float = Field(default=0.8, ge=0.0, le=5.0, description="Sampling temperature")


def comparison_markdown(comparison) -> str:
    header = ["", comparison.a.version, comparison.b.version]
    lines = [
        f"# {comparison.agent_id}: {comparison.a.version} against {comparison.b.version}",
        "",
        f"Test split of dataset {comparison.dataset_version} ({comparison.test_characters} "
        f"characters); {len(comparison.prompts)} prompts, seed {comparison.seed}, "
        f"temperature {comparison.temperature}.",
        "",
        markdown_table(header, comparison.rows()).value,
        "",
        markdown_table(["prompt", *header[1:]], comparison.sample_rows()).value,
    ]
    return "\n".join(lines)


@dg.asset(group_name="comparisons", kinds={"onnx", "mlflow"}, partitions_def=agents)
def model_comparison(
    context: dg.AssetExecutionContext,
    config: ComparisonConfig,
    thunder: ThunderHome,
    tracking: MlflowTracking,
):
    """Two released versions of the agent side by side on the same test split, prompts and
    seed: loss, confidence, latency at batch 1, size, parameters and samples; for two
    classifiers, accuracy, macro F1 and the confusion matrices on the test split of the
    agent's newest labelled examples."""
    from thunder_dagster.deployments.comparison import (
        ComparisonError,
        compare_versions,
        released_deployment,
    )
    from thunder_dagster.modeling.plots import confidence_distributions
    from thunder_dagster.modeling.text import dataset_documents, split_documents

    home = thunder.home()
    agent_id = context.partition_key
    models_dir, deployments_dir = home.models_dir(agent_id), home.deployments_dir(agent_id)
    with failing_on(ComparisonError, UnreadableCardError):
        released_deployment(models_dir, deployments_dir, config.version_a)  # names the released
        card = ModelCard.read(models_dir / config.version_a)
    if task_kind(card.task).labelled:
        return _classifiers(context, config, home, tracking)
    dataset = latest_dataset(home.processed_dir(agent_id))
    if dataset is None:
        raise _no_split(agent_id, "training dataset")
    with failing_on(ComparisonError):
        fraction = card.validation_fraction
        test_text = split_documents(dataset_documents(dataset.path), fraction).test
        comparison = compare_versions(
            models_dir,
            deployments_dir,
            config.version_a,
            config.version_b,
            test_text,
            dataset.version,
            config.prompts,
            config.seed,
            config.temperature,
        )
    a, b = comparison.a, comparison.b
    plot = confidence_distributions(
        {a.version: list(a.confidences), b.version: list(b.confidences)},
        title=f"{agent_id}: answer confidence",
    )
    measures = ("test_loss", "latency_ms_batch_1", "ms_per_character", "size_bytes", "parameters")
    tracker, run = _tracked(
        context,
        tracking,
        comparison,
        {
            "dataset_version": comparison.dataset_version,
            "prompts": len(comparison.prompts),
            "seed": comparison.seed,
            "temperature": comparison.temperature,
        },
        {
            f"{side}_{measure}": getattr(score, measure)
            for side, score in (("a", a), ("b", b))
            for measure in measures
        },
        {
            "comparison.md": comparison_markdown(comparison).encode(),
            "confidence.png": plot,
        },
    )
    header = ["", a.version, b.version]
    return dg.Output(
        comparison,
        metadata={
            "version_a": a.version,
            "version_b": b.version,
            "test_loss_a": dg.MetadataValue.float(a.test_loss),
            "test_loss_b": dg.MetadataValue.float(b.test_loss),
            "dataset_version": comparison.dataset_version,
            "side_by_side": markdown_table(header, comparison.rows()),
            "samples": markdown_table(["prompt", *header[1:]], comparison.sample_rows()),
            "confidence": image(plot, "answer confidence"),
            "mlflow": tracking_state(tracker),
            **links(mlflow_run=tracker.run_url(run)),
        },
    )


def _classifiers(context, config: ComparisonConfig, home, tracking: MlflowTracking) -> dg.Output:
    """Two classifier versions on the test split of the agent's newest labelled examples."""
    from thunder_dagster.deployments.classifier_comparison import (
        compare_classifiers,
        labelled_test_split,
    )
    from thunder_dagster.deployments.comparison import ComparisonError
    from thunder_dagster.documents.labelled import latest_labelled, read_labelled_set

    agent_id = context.partition_key
    manifest = latest_labelled(home.processed_dir(agent_id))
    if manifest is None:
        raise _no_split(agent_id, "labelled examples")
    with failing_on(ComparisonError):
        texts, labels = read_labelled_set(manifest["path"])
        test_texts, truth = labelled_test_split(texts, labels)
        comparison = compare_classifiers(
            home.models_dir(agent_id),
            home.deployments_dir(agent_id),
            config.version_a,
            config.version_b,
            test_texts,
            truth,
            manifest["version"],
        )
    a, b = comparison.a, comparison.b
    tracker, run = _tracked(
        context,
        tracking,
        comparison,
        {"labelled_version": manifest["version"]},
        {
            f"{side}_{name}": value
            for side, score in (("a", a), ("b", b))
            for name, value in (
                ("accuracy", score.metrics.accuracy),
                ("macro_f1", score.metrics.macro_f1),
                ("ms_per_text", score.ms_per_text),
            )
        },
    )
    return dg.Output(
        comparison,
        metadata={
            "version_a": a.version,
            "version_b": b.version,
            "accuracy_a": dg.MetadataValue.float(a.metrics.accuracy),
            "accuracy_b": dg.MetadataValue.float(b.metrics.accuracy),
            "macro_f1_a": dg.MetadataValue.float(a.metrics.macro_f1),
            "macro_f1_b": dg.MetadataValue.float(b.metrics.macro_f1),
            "labelled_version": manifest["version"],
            "test_texts": comparison.test_texts,
            "side_by_side": markdown_table(["", a.version, b.version], comparison.rows()),
            "confusion_matrices": markdown_table(
                comparison.confusion_header(), comparison.confusion_rows()
            ),
            "mlflow": tracking_state(tracker),
            **links(mlflow_run=tracker.run_url(run)),
        },
    )


def _no_split(agent_id: str, what: str) -> dg.Failure:
    return dg.Failure(
        f"{agent_id}: no {what} to take a test split from; run `thunder ingest {agent_id}`",
        allow_retries=False,
    )


def _tracked(context, tracking: MlflowTracking, comparison, params, metrics, files=None):
    """The comparison as an MLflow run: the two versions and `params`, `metrics`, and
    comparison.json beside `files` (name -> bytes) as artifacts; the tracker and the run."""
    a, b = comparison.a, comparison.b
    tracker = tracking.tracker(context.log.warning)
    run = tracker.start_run(
        f"compare {comparison.agent_id} {a.version} {b.version}",
        {"thunder.agent": comparison.agent_id, "thunder.kind": "comparison"},
    )
    tracker.log_params(run, {"version_a": a.version, "version_b": b.version, **params})
    tracker.log_metrics(run, metrics)
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "comparison.json").write_text(json.dumps(asdict(comparison), indent=2))
        for name, data in (files or {}).items():
            (folder / name).write_bytes(data)
        tracker.log_artifacts(run, folder, "comparison")
    tracker.end_run(run)
    return tracker, run
