import dagster as dg

from thunder_dagster.documents.datasets import TrainingDataset
from thunder_dagster.modeling.cards import ONNX_NAME, STEP_NAME, ExportSummary, ModelCard
from thunder_dagster.modeling.models import TrainedModel
from thunder_dagster.modeling.reports import EXPORT_CHECKS, ExportReport
from thunder_dagster.runtime.errors import failing_on
from thunder_dagster.runtime.metadata import check_results
from thunder_dagster.runtime.partitions import agents


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
    """The model as ONNX, beside model.keras, verified before anything deploys it.

    tokens int32 [batch, context] -> logits [batch, context, vocab]; the deployment is blocked
    unless it matches Keras, stays finite and beats the unigram baseline on the test split."""
    import onnx

    from thunder_dagster.modeling.exports import export_and_verify
    from thunder_dagster.modeling.text import DatasetTooSmallError, encoded_dataset

    with failing_on(DatasetTooSmallError):
        data = encoded_dataset(training_dataset, keras_model.validation_fraction)
    report: ExportReport = export_and_verify(keras_model, data, keras_model.keras_path.parent)
    ops = sorted({node.op_type for node in onnx.load(report.onnx_path).graph.node})
    card = ModelCard.read(keras_model.model_dir)
    card.with_files({ONNX_NAME: report.onnx_sha256, STEP_NAME: report.step_sha256}).replace(
        onnx=ExportSummary(
            test_loss=report.onnx_test_loss,
            parity_max_abs_difference=report.parity.max_abs_difference,
            latency_ms=report.latency_ms,
            step_graph=report.step_path is not None,
            checks={check.name: check.passed for check in report.checks},
            input={"name": "tokens", "dtype": "int32", "shape": ["batch", card.context_length]},
            output={
                "name": "logits",
                "dtype": "float32",
                "shape": ["batch", card.context_length, len(card.vocab)],
            },
        )
    ).write(keras_model.model_dir)
    context.log.info(
        f"{report.onnx_path}: test loss {report.onnx_test_loss:.4f}, parity "
        f"{report.parity.max_abs_difference:.1e}, latency {report.latency_ms}"
    )
    yield dg.Output(
        report,
        metadata={
            "onnx_path": dg.MetadataValue.path(report.onnx_path),
            "sha256": report.onnx_sha256,
            "family": report.family,
            "operators": ", ".join(ops),
            "test_loss": dg.MetadataValue.float(report.onnx_test_loss),
            "unigram_loss": dg.MetadataValue.float(report.unigram_loss),
            "max_abs_difference": dg.MetadataValue.float(report.parity.max_abs_difference),
            **{name: dg.MetadataValue.float(round(v, 4)) for name, v in report.latency_ms.items()},
        },
    )
    yield from check_results(report.checks)
