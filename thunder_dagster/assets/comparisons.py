import json
import tempfile
from dataclasses import asdict
from pathlib import Path

import dagster as dg
from pydantic import Field

from thunder_dagster.documents.datasets import latest_dataset
from thunder_dagster.modeling.cards import ModelCard
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.runtime.errors import failing_on
from thunder_dagster.runtime.metadata import image, links, markdown_table, tracking_state
from thunder_dagster.runtime.partitions import agents


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
    seed: loss, confidence, latency at batch 1, size, parameters and samples."""
    from thunder_dagster.deployments.comparison import ComparisonError, compare_versions
    from thunder_dagster.modeling.plots import confidence_distributions
    from thunder_dagster.modeling.text import dataset_documents, split_documents

    home = thunder.home()
    agent_id = context.partition_key
    models_dir, deployments_dir = home.models_dir(agent_id), home.deployments_dir(agent_id)
    dataset = latest_dataset(home.processed_dir(agent_id))
    if dataset is None:
        raise dg.Failure(
            f"{agent_id}: no training dataset to take a test split from; run `thunder ingest "
            f"{agent_id}`",
            allow_retries=False,
        )
    with failing_on(ComparisonError):
        fraction = ModelCard.read(models_dir / config.version_a).validation_fraction
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
    tracker = tracking.tracker(context.log.warning)
    run = tracker.start_run(
        f"compare {agent_id} {a.version} {b.version}",
        {"thunder.agent": agent_id, "thunder.kind": "comparison"},
    )
    tracker.log_params(
        run,
        {
            "version_a": a.version,
            "version_b": b.version,
            "dataset_version": comparison.dataset_version,
            "prompts": len(comparison.prompts),
            "seed": comparison.seed,
            "temperature": comparison.temperature,
        },
    )
    measures = ("test_loss", "latency_ms_batch_1", "ms_per_character", "size_bytes", "parameters")
    tracker.log_metrics(
        run,
        {
            f"{side}_{measure}": getattr(score, measure)
            for side, score in (("a", a), ("b", b))
            for measure in measures
        },
    )
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        (folder / "comparison.md").write_text(comparison_markdown(comparison))
        (folder / "comparison.json").write_text(json.dumps(asdict(comparison), indent=2))
        (folder / "confidence.png").write_bytes(plot)
        tracker.log_artifacts(run, folder, "comparison")
    tracker.end_run(run)
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
