"""The ONNX artifact of a trained model: its graphs written beside model.keras, then verified.

graphs.py writes the ONNX graphs; verification.py holds the gates. This module runs the one
and then the other and reports what they found.
"""

from collections.abc import Callable

from thunder_dagster.files import sha256_of, write_atomically
from thunder_dagster.modeling.cards import ONNX_NAME, STEP_NAME
from thunder_dagster.modeling.graphs import export_onnx, export_step_onnx
from thunder_dagster.modeling.reports import ExportReport
from thunder_dagster.modeling.text import sequential_windows
from thunder_dagster.modeling.training import TEST_WINDOWS
from thunder_dagster.modeling.verification import (
    PROBE_WINDOWS,
    check_step_graph,
    latency,
    session,
    verify,
)


def export_and_verify(
    trained,
    data,
    out_dir,
    with_latency: bool = True,
    export: Callable = export_onnx,
) -> ExportReport:
    """Load model.keras, write model.onnx (and step.onnx) beside it, and measure them.

    `export` writes the windowed graph; a test passes a faulty one to see the gates hold."""
    from thunder_dagster.modeling.architectures import load_model

    model = load_model(trained.keras_path)
    proto = export(model, trained.family)
    onnx_path = out_dir / ONNX_NAME
    write_atomically(onnx_path, proto.SerializeToString())
    onnx_session = session(str(onnx_path))
    step_proto = export_step_onnx(model, trained.family)
    step_path = out_dir / STEP_NAME if step_proto is not None else None
    if step_path is not None:
        write_atomically(step_path, step_proto.SerializeToString())
    x, y = sequential_windows(data.test, trained.context_length, limit=TEST_WINDOWS)
    measured, loss, checks = verify(
        model, onnx_session, x[:PROBE_WINDOWS], (x, y), trained.unigram_loss
    )
    step_session = session(str(step_path)) if step_path is not None else None
    checks.append(check_step_graph(onnx_session, step_session, x[:PROBE_WINDOWS]))
    timings = (
        latency(model, onnx_session, trained.context_length, len(trained.vocab))
        if with_latency
        else {}
    )
    return ExportReport(
        onnx_path=str(onnx_path),
        onnx_sha256=sha256_of(onnx_path),
        family=trained.family,
        parity=measured,
        onnx_test_loss=loss,
        unigram_loss=trained.unigram_loss,
        latency_ms=timings,
        checks=checks,
        step_path=str(step_path) if step_path is not None else None,
        step_sha256=sha256_of(step_path) if step_path is not None else None,
    )
