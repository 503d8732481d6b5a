"""The ONNX artefact: export, structural check, parity with Keras, validation loss, latency.

Every family exports to one signature: `tokens` int32 [batch, context] -> `logits` float32
[batch, context, vocab]. Transformers and convolutions go through tf2onnx. tf2onnx turns a
Keras 3 GRU into an ONNX Loop over time steps (its GRU rewriter matches Keras 2's graph, not
Keras 3's while loop), ten times slower than ONNX's fused GRU op; GRU models are therefore
written as the fused op from the trained weights and held to the same parity check.
"""

import math
import time
from dataclasses import dataclass

import numpy as np

from thunder_dagster.documents.datasets import write_atomically
from thunder_dagster.modeling.models import sha256_of
from thunder_dagster.modeling.text import sequential_windows

OPSET = 17
INPUT_NAME = "tokens"
OUTPUT_NAME = "logits"


def export_onnx(model, family: str):
    """The trained Keras model as an onnx.ModelProto with the common signature."""
    import onnx

    proto = fused_gru_graph(model) if family == "gru" else _tf2onnx(model)
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _tf2onnx(model):
    import tensorflow as tf
    import tf2onnx

    context_length = model.inputs[0].shape[1]
    signature = (tf.TensorSpec((None, context_length), tf.int32, name=INPUT_NAME),)
    proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=OPSET)
    if [output.name for output in proto.graph.output] != [OUTPUT_NAME]:
        raise ValueError(
            f"tf2onnx named the outputs {[o.name for o in proto.graph.output]}, "
            f"expected [{OUTPUT_NAME!r}]: the model's last layer must be named {OUTPUT_NAME!r}"
        )
    return proto


def _activation(nodes: list, name: str, source: str, activation: str) -> str:
    """ONNX nodes for keras' relu, gelu (exact, erf form) and swish; returns the output name."""
    from onnx import helper

    out = f"{name}_act"
    if activation == "relu":
        nodes.append(helper.make_node("Relu", [source], [out]))
    elif activation in ("swish", "silu"):
        nodes += [
            helper.make_node("Sigmoid", [source], [f"{name}_sig"]),
            helper.make_node("Mul", [source, f"{name}_sig"], [out]),
        ]
    elif activation == "gelu":
        nodes += [
            helper.make_node("Div", [source, "sqrt2"], [f"{name}_scaled"]),
            helper.make_node("Erf", [f"{name}_scaled"], [f"{name}_erf"]),
            helper.make_node("Add", [f"{name}_erf", "one"], [f"{name}_erf1"]),
            helper.make_node("Mul", [source, f"{name}_erf1"], [f"{name}_x"]),
            helper.make_node("Mul", [f"{name}_x", "half"], [out]),
        ]
    elif activation == "linear":
        return source
    else:
        raise ValueError(f"no ONNX form for activation {activation!r}")
    return out


def fused_gru_graph(model):
    """Embedding -> ONNX GRU op per layer -> dense head -> logits, from the Keras weights.

    Keras' GRU (reset_after=True) keeps gates in the order update, reset, candidate, as ONNX's
    GRU does, and applies the reset gate after the recurrent matmul: linear_before_reset=1.
    """
    import keras
    from onnx import TensorProto, helper, numpy_helper

    context_length = model.inputs[0].shape[1]
    initializers = [
        numpy_helper.from_array(np.array(math.sqrt(2.0), np.float32), "sqrt2"),
        numpy_helper.from_array(np.array(1.0, np.float32), "one"),
        numpy_helper.from_array(np.array(0.5, np.float32), "half"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
    ]
    nodes = []
    current = INPUT_NAME
    time_major = False
    for layer in model.layers:
        if isinstance(layer, keras.layers.InputLayer | keras.layers.Dropout):
            continue
        name = layer.name
        if isinstance(layer, keras.layers.Embedding):
            (table,) = layer.get_weights()
            initializers.append(numpy_helper.from_array(table.astype(np.float32), f"{name}_w"))
            nodes.append(helper.make_node("Gather", [f"{name}_w", current], [f"{name}_out"]))
            current = f"{name}_out"
        elif isinstance(layer, keras.layers.GRU):
            if not layer.reset_after or layer.go_backwards or not layer.return_sequences:
                raise ValueError(f"layer {name}: only forward GRUs with reset_after export")
            kernel, recurrent, bias = layer.get_weights()
            units = recurrent.shape[0]
            initializers += [
                numpy_helper.from_array(kernel.T[None].astype(np.float32), f"{name}_W"),
                numpy_helper.from_array(recurrent.T[None].astype(np.float32), f"{name}_R"),
                numpy_helper.from_array(bias.reshape(1, -1).astype(np.float32), f"{name}_B"),
            ]
            if not time_major:
                nodes.append(
                    helper.make_node("Transpose", [current], [f"{name}_tm"], perm=[1, 0, 2])
                )
                current, time_major = f"{name}_tm", True
            nodes += [
                helper.make_node(
                    "GRU",
                    [current, f"{name}_W", f"{name}_R", f"{name}_B"],
                    [f"{name}_y"],
                    hidden_size=units,
                    linear_before_reset=1,
                ),
                helper.make_node("Squeeze", [f"{name}_y", "axis1"], [f"{name}_out"]),
            ]
            current = f"{name}_out"
        elif isinstance(layer, keras.layers.Dense):
            if time_major:
                nodes.append(
                    helper.make_node("Transpose", [current], ["batch_major"], perm=[1, 0, 2])
                )
                current, time_major = "batch_major", False
            kernel, bias = layer.get_weights()
            initializers += [
                numpy_helper.from_array(kernel.astype(np.float32), f"{name}_k"),
                numpy_helper.from_array(bias.astype(np.float32), f"{name}_b"),
            ]
            nodes += [
                helper.make_node("MatMul", [current, f"{name}_k"], [f"{name}_mm"]),
                helper.make_node("Add", [f"{name}_mm", f"{name}_b"], [f"{name}_lin"]),
            ]
            activation = keras.activations.serialize(layer.activation)
            activation = activation if isinstance(activation, str) else activation["config"]
            activation = activation.rsplit(">", 1)[-1]
            output = _activation(nodes, name, f"{name}_lin", activation)
            if name == OUTPUT_NAME:
                nodes.append(helper.make_node("Identity", [output], [OUTPUT_NAME]))
            current = output
        else:
            raise ValueError(f"layer {name} ({type(layer).__name__}) has no fused ONNX form")
    vocab_size = model.outputs[0].shape[-1]
    graph = helper.make_graph(
        nodes,
        model.name,
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.INT32, ["batch", context_length])],
        [
            helper.make_tensor_value_info(
                OUTPUT_NAME, TensorProto.FLOAT, ["batch", context_length, vocab_size]
            )
        ],
        initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 8
    return proto


def session(path_or_bytes):
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    return onnxruntime.InferenceSession(path_or_bytes, options, providers=["CPUExecutionProvider"])


@dataclass(frozen=True)
class Parity:
    max_abs_difference: float
    argmax_agreement: float
    finite: bool
    probe_shape: tuple[int, ...]

    def passed(self, tolerance: float) -> bool:
        return self.max_abs_difference <= tolerance and self.argmax_agreement == 1.0


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


def onnx_validation_loss(onnx_session, x: np.ndarray, y: np.ndarray, batch_size: int = 64):
    """Mean cross-entropy, in nats per character, of the exported model on validation windows."""
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


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    description: str
    details: dict


@dataclass(frozen=True)
class ExportReport:
    onnx_path: str
    onnx_sha256: str
    family: str
    parity: Parity
    onnx_validation_loss: float
    unigram_loss: float
    latency_ms: dict
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


def verify(model, onnx_session, probe, validation, unigram: float) -> tuple[Parity, float, list]:
    """The three gates of a deployment: parity with Keras, finite outputs, better than unigram.

    A diverged model passes onnx.checker and parity alike; only the loss check catches it.
    """
    measured = parity(model, onnx_session, probe)
    loss = onnx_validation_loss(onnx_session, *validation)
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
            f"validation loss {loss:.4f} nats/char against the unigram baseline {unigram:.4f}",
            {"validation_loss": loss, "unigram_loss": unigram},
        ),
    ]
    return measured, loss, checks


def export_and_verify(trained, data, out_dir, with_latency: bool = True) -> ExportReport:
    """Load model.keras, write model.onnx beside it, and measure it against the Keras model."""
    import keras

    model = keras.saving.load_model(trained.keras_path)
    proto = export_onnx(model, trained.family)
    onnx_path = out_dir / "model.onnx"
    write_atomically(onnx_path, proto.SerializeToString())
    onnx_session = session(str(onnx_path))
    x, y = sequential_windows(data.validation, trained.context_length, limit=256)
    measured, loss, checks = verify(
        model, onnx_session, x[:PROBE_WINDOWS], (x, y), trained.unigram_loss
    )
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
        onnx_validation_loss=loss,
        unigram_loss=trained.unigram_loss,
        latency_ms=timings,
        checks=checks,
    )
