import dagster as dg

from thunder_dagster.assets.checks import check_results
from thunder_dagster.assets.partitions import agents
from thunder_dagster.assets.tuning import encoded_dataset
from thunder_dagster.documents.datasets import TrainingDataset
from thunder_dagster.modeling.exports import ExportReport, export_and_verify
from thunder_dagster.modeling.models import TrainedModel, read_card, write_card

EXPORT_CHECKS = ("parity", "finite_outputs", "better_than_unigram", "step_parity")


@dg.asset(
    group_name="deployment",
    kinds={"onnx"},
    partitions_def=agents,
    check_specs=[
        dg.AssetCheckSpec(name, asset="onnx_model", blocking=True) for name in EXPORT_CHECKS
    ],
)
def onnx_model(
    context: dg.AssetExecutionContext, keras_model: TrainedModel, training_dataset: TrainingDataset
):
    """The model as ONNX (tokens int32 [batch, context] -> logits [batch, context, vocab]),
    model.onnx beside model.keras; blocked unless it matches Keras and beats the unigram loss."""
    import onnx

    data = encoded_dataset(training_dataset, keras_model.validation_fraction)
    report: ExportReport = export_and_verify(keras_model, data, keras_model.keras_path.parent)
    ops = sorted({node.op_type for node in onnx.load(report.onnx_path).graph.node})
    card = read_card(keras_model.model_dir)
    card["files"]["model.onnx"] = report.onnx_sha256
    if report.step_sha256 is not None:
        card["files"]["step.onnx"] = report.step_sha256
    card["onnx"] = {
        "input": {
            "name": "tokens",
            "dtype": "int32",
            "shape": ["batch", keras_model.context_length],
        },
        "output": {
            "name": "logits",
            "dtype": "float32",
            "shape": ["batch", keras_model.context_length, len(keras_model.vocab)],
        },
        "step_graph": report.step_path is not None,
        "validation_loss": report.onnx_validation_loss,
        "parity_max_abs_difference": report.parity.max_abs_difference,
        "latency_ms": report.latency_ms,
        "checks": {check.name: check.passed for check in report.checks},
    }
    write_card(keras_model.model_dir, card)
    context.log.info(
        f"{report.onnx_path}: validation loss {report.onnx_validation_loss:.4f}, parity "
        f"{report.parity.max_abs_difference:.1e}, latency {report.latency_ms}"
    )
    yield dg.Output(
        report,
        metadata={
            "onnx_path": dg.MetadataValue.path(report.onnx_path),
            "sha256": report.onnx_sha256,
            "family": report.family,
            "operators": ", ".join(ops),
            "validation_loss": dg.MetadataValue.float(report.onnx_validation_loss),
            "max_abs_difference": dg.MetadataValue.float(report.parity.max_abs_difference),
            **{name: dg.MetadataValue.float(round(v, 4)) for name, v in report.latency_ms.items()},
        },
    )
    yield from check_results(report.checks)
