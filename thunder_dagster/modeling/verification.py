"""The gates between an exported model and a deployment: parity with Keras, finite outputs, a
validation loss better than the unigram baseline, the step graph against the windowed one; and
the latency of both runtimes, recorded, never a gate."""

import math
import time

import numpy as np

from thunder_dagster.modeling.decoding import step_logits
from thunder_dagster.modeling.graphs import INPUT_NAME, OUTPUT_NAME
from thunder_dagster.modeling.reports import Check, Parity


def session(path_or_bytes):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(path_or_bytes, options, providers=["CPUExecutionProvider"])


def parity(model, onnx_session, probe: np.ndarray) -> Parity:
    """Keras and onnxruntime on one probe batch: largest logit difference, argmax agreement."""
    expected = np.asarray(model(probe, training=False))
    actual = onnx_session.run([OUTPUT_NAME], {INPUT_NAME: probe.astype(np.int32)})[0]
    finite = bool(np.isfinite(actual).all() and np.isfinite(expected).all())
    return Parity(
        max_abs_difference=float(np.abs(expected - actual).max()) if finite else math.inf,
        argmax_agreement=float((expected.argmax(-1) == actual.argmax(-1)).mean()),
        finite=finite,
        probe_shape=tuple(probe.shape),
    )


def onnx_loss(onnx_session, x: np.ndarray, y: np.ndarray, batch_size: int = 64):
    """Mean cross-entropy, in nats per character, of the exported model on held-out windows."""
    total, count = 0.0, 0
    for start in range(0, len(x), batch_size):
        logits = onnx_session.run([OUTPUT_NAME], {INPUT_NAME: x[start : start + batch_size]})[0]
        logits = logits.astype(np.float64)
        peak = logits.max(-1, keepdims=True)
        log_norm = np.log(np.exp(logits - peak).sum(-1)) + peak[..., 0]
        target = np.take_along_axis(logits, y[start : start + batch_size, :, None], -1)[..., 0]
        total += float((log_norm - target).sum())
        count += target.size
    return total / count


def mean_milliseconds(call, repeats: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        call()
    started = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - started) / repeats * 1000


def latency(model, onnx_session, context_length: int, vocab_size: int, batches=(1, 64)) -> dict:
    """Milliseconds per call of onnxruntime and of keras predict, at each batch size."""
    rng = np.random.default_rng(0)
    measured = {}
    for batch in batches:
        tokens = rng.integers(0, vocab_size, (batch, context_length), dtype=np.int32)
        repeats = 50 if batch == 1 else 10
        measured[f"onnxruntime_ms_batch_{batch}"] = mean_milliseconds(
            lambda tokens=tokens: onnx_session.run([OUTPUT_NAME], {INPUT_NAME: tokens}), repeats
        )
        measured[f"keras_predict_ms_batch_{batch}"] = mean_milliseconds(
            lambda tokens=tokens: model.predict(tokens, verbose=0), max(3, repeats // 5)
        )
    return measured


PARITY_TOLERANCE = 1e-4
PROBE_WINDOWS = 8


def verify(model, onnx_session, probe, test, unigram: float) -> tuple[Parity, float, list]:
    """The three gates of a deployment: parity with Keras, finite outputs, better than unigram
    on the test split (`test`: its windows; `unigram`: the baseline on the same text).

    A diverged model passes onnx.checker and parity alike; only the loss check catches it.
    """
    measured = parity(model, onnx_session, probe)
    loss = onnx_loss(onnx_session, *test)
    checks = [
        Check(
            "parity",
            measured.passed(PARITY_TOLERANCE),
            f"largest logit difference {measured.max_abs_difference:.2e} (at most "
            f"{PARITY_TOLERANCE:.0e}), argmax agreement {measured.argmax_agreement:.1%} "
            f"on a probe batch of {measured.probe_shape}",
            {
                "max_abs_difference": measured.max_abs_difference,
                "argmax_agreement": measured.argmax_agreement,
            },
        ),
        Check(
            "finite_outputs",
            measured.finite and math.isfinite(loss),
            "every logit finite" if measured.finite else "NaN or infinite logits",
            {"finite": measured.finite},
        ),
        Check(
            "better_than_unigram",
            math.isfinite(loss) and loss < unigram,
            f"test loss {loss:.4f} nats/char against the unigram baseline {unigram:.4f} on the "
            "same test text",
            {"test_loss": loss, "unigram_loss": unigram},
        ),
    ]
    return measured, loss, checks


def check_step_graph(window_session, step_session, probe: np.ndarray) -> Check:
    """The step graph against the windowed one on the probe: half the window fed at once,
    then one token at a time, must give the same logits at every position."""
    if step_session is None:
        return Check(
            "step_parity",
            True,
            "no step graph for this family: the server generates with the windowed graph",
            {"step_graph": False},
        )
    windowed = window_session.run([OUTPUT_NAME], {INPUT_NAME: probe})[0]
    stepped = step_logits(step_session, probe, prefill=probe.shape[1] // 2)
    difference = float(np.abs(windowed - stepped).max())
    agreement = float((windowed.argmax(-1) == stepped.argmax(-1)).mean())
    return Check(
        "step_parity",
        difference <= PARITY_TOLERANCE and agreement == 1.0,
        f"step graph against the windowed graph: largest logit difference {difference:.2e} "
        f"(at most {PARITY_TOLERANCE:.0e}), argmax agreement {agreement:.1%}",
        {"step_graph": True, "max_abs_difference": difference, "argmax_agreement": agreement},
    )
