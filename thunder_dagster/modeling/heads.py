"""A classifier as one ONNX graph: the sentence encoder's graph, then the head written from its
Keras weights, then a softmax.

    input_ids, attention_mask int64 [batch, sequence] -> probabilities float32 [batch, labels]

The head is a few dense layers, so it is written directly (MatMul, Add, the activation) rather
than through tf2onnx; the export is held to parity with Keras on the same texts. A classifier
with a linear model over TF-IDF features (LexicalLogits) has those computed from the same
token ids inside the graph (lexical.lexical_nodes), its logits added before the softmax.
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thunder_dagster.modeling.cards import ClassifierMetrics
from thunder_dagster.modeling.classifiers import LexicalInputs, inputs, probabilities
from thunder_dagster.modeling.evaluation import LabelledSplit, measure
from thunder_dagster.modeling.lexical import LexicalVocabulary, lexical_nodes
from thunder_dagster.modeling.reports import Check
from thunder_dagster.retrieval.graph import INPUTS, OPSET
from thunder_dagster.retrieval.graph import OUTPUT as EMBEDDINGS

PROBABILITIES = "probabilities"
SCORE = "score"
FEATURES = "features"  # the reward head's input: prompt, answer and their product
PARITY_TOLERANCE = 1e-4


def head_graph(model, activation: str, output: str = PROBABILITIES, input_name: str = EMBEDDINGS):
    """A Keras head (build_head's or build_reward_head's) as an ONNX model. `output`:
    PROBABILITIES, a softmax over its logits (embeddings -> probabilities), or SCORE, the
    reward head's sigmoid scaled to the 1-5 scale (features -> score)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers = [], []
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    lexical = [layer for layer in model.layers if layer.__class__.__name__ == "LexicalLogits"]
    dimensions = int(dense[0].get_weights()[0].shape[0])
    x = input_name
    for number, layer in enumerate(dense):
        kernel, bias = (np.asarray(w, np.float32) for w in layer.get_weights())
        initializers += [
            numpy_helper.from_array(kernel, f"head_w{number}"),
            numpy_helper.from_array(bias, f"head_b{number}"),
        ]
        product = f"head_mm{number}"
        nodes.append(helper.make_node("MatMul", [x, f"head_w{number}"], [product]))
        out = f"head_z{number}"
        nodes.append(helper.make_node("Add", [product, f"head_b{number}"], [out]))
        if number < len(dense) - 1:
            out = _activation(nodes, initializers, activation, out, number)
        x = out
    taken = [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", dimensions])]
    for layer in lexical:
        vocabulary = LexicalVocabulary(
            layer.vocab_size,
            layer.pair_buckets,
            np.asarray(layer.rows.numpy(), np.int32),
            np.asarray(layer.idf.numpy(), np.float32),
        )
        words, words_init = lexical_nodes(
            vocabulary, layer.table.numpy(), INPUTS[0], INPUTS[1], "lex_logits"
        )
        nodes += words
        initializers += words_init
        nodes.append(helper.make_node("Add", [x, "lex_logits"], ["head_logits"]))
        x = "head_logits"
        taken += [
            helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
            for name in INPUTS
        ]
    if output == PROBABILITIES:
        nodes.append(helper.make_node("Softmax", [x], [PROBABILITIES], axis=-1))
    elif output == SCORE:  # 1 + 4 * sigmoid: rewards.to_score of the head's unit score
        for name, value in (("head_four", 4.0), ("head_one", 1.0)):
            initializers.append(numpy_helper.from_array(np.float32(value), name))
        nodes += [
            helper.make_node("Sigmoid", [x], ["head_unit"]),
            helper.make_node("Mul", ["head_unit", "head_four"], ["head_scaled"]),
            helper.make_node("Add", ["head_scaled", "head_one"], [SCORE]),
        ]
    else:
        raise ValueError(f"output {output!r}: {PROBABILITIES} or {SCORE}")
    width = int(dense[-1].get_weights()[0].shape[1])
    graph = helper.make_graph(
        nodes,
        "classifier_head" if output == PROBABILITIES else "reward_head",
        taken,
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", width])],
        initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    proto.ir_version = 8
    onnx.checker.check_model(proto)
    return proto


def _activation(nodes, initializers, name: str, source: str, number: int) -> str:
    from onnx import helper, numpy_helper

    out = f"head_a{number}"
    if name == "relu":
        nodes.append(helper.make_node("Relu", [source], [out]))
    elif name == "swish":
        gate = f"head_sig{number}"
        nodes.append(helper.make_node("Sigmoid", [source], [gate]))
        nodes.append(helper.make_node("Mul", [source, gate], [out]))
    elif name == "gelu":  # exact, through erf, as architectures.gelu computes it
        for constant, value in (("sqrt2", math.sqrt(2.0)), ("half", 0.5), ("one", 1.0)):
            label = f"head_{constant}{number}"
            initializers.append(numpy_helper.from_array(np.float32(value), label))
        scaled, erf, shifted, product = (f"head_g{k}{number}" for k in "sefp")
        nodes.append(helper.make_node("Div", [source, f"head_sqrt2{number}"], [scaled]))
        nodes.append(helper.make_node("Erf", [scaled], [erf]))
        nodes.append(helper.make_node("Add", [erf, f"head_one{number}"], [shifted]))
        nodes.append(helper.make_node("Mul", [source, shifted], [product]))
        nodes.append(helper.make_node("Mul", [product, f"head_half{number}"], [out]))
    else:
        raise ValueError(f"activation {name!r}: the head writer knows relu, swish and gelu")
    return out


def classifier_graph(encoder_graph: Path, head):
    """The encoder's graph with the head after it, as one model: the head's inputs are the
    encoder's embeddings and, for a lexical head, the same token ids and mask."""
    import onnx

    merged = onnx.load(str(encoder_graph))
    graph = merged.graph
    available = {value.name for value in graph.input} | {
        name for node in graph.node for name in node.output
    }
    missing = [value.name for value in head.graph.input if value.name not in available]
    taken = available | {tensor.name for tensor in graph.initializer}
    clashing = {name for node in head.graph.node for name in node.output} | {
        tensor.name for tensor in head.graph.initializer
    }
    if missing or taken & clashing:
        raise ValueError(
            f"the head does not fit the encoder: inputs {missing} missing, names "
            f"{sorted(taken & clashing)[:5]} taken"
        )
    graph.node.extend(head.graph.node)
    graph.initializer.extend(head.graph.initializer)
    del graph.output[:]
    graph.output.extend(head.graph.output)
    onnx.checker.check_model(merged)
    return merged


def run_classifier(session, token_ids: list[list[int]]) -> np.ndarray:
    """Probabilities for each text's token ids (padded per batch, masked), one row a text."""
    out = []
    for ids in token_ids:
        input_ids = np.asarray([ids], np.int64)
        mask = np.ones_like(input_ids)
        (row,) = session.run([PROBABILITIES], dict(zip(INPUTS, (input_ids, mask), strict=True)))
        out.append(row[0])
    return np.asarray(out, np.float32)


CLASSIFIER_CHECKS = ("parity", "finite_outputs", "better_than_majority")
LATENCY_PROBES = 20


@dataclass(frozen=True)
class ClassifierExport:
    """The exported graph and what its gates found, measured through the graph itself."""

    onnx_path: str
    onnx_sha256: str
    max_abs_difference: float  # against Keras on the test texts
    test_loss: float  # cross-entropy of the graph's probabilities on the test split
    prior_loss: float  # the training labels' frequencies as the prediction, on the same split
    latency_ms: dict[str, float]
    metrics: ClassifierMetrics  # from the graph's predictions: what the server will answer
    checks: list[Check]

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


def export_classifier(
    model,
    activation: str,
    encoder,
    split: LabelledSplit,
    test_texts: list[str],
    path: Path,
    lexical: LexicalInputs | None = None,
) -> ClassifierExport:
    """Write encoder + head + softmax as one graph at `path` and hold it to the gates: parity
    with Keras on the test texts, finite probabilities, and better than always answering the
    most common training label (accuracy and macro F1, on the test split)."""
    import onnxruntime

    from thunder_dagster.files import sha256_of, write_atomically

    graph = classifier_graph(encoder.graph_path, head_graph(model, activation))
    write_atomically(path, graph.SerializeToString())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    tokens = encoder.tokens(test_texts)
    exported = run_classifier(session, tokens).astype(np.float64)
    expected = probabilities(model, inputs(split, lexical, 2))
    difference = float(np.max(np.abs(exported - expected)))
    agreement = float(np.mean(exported.argmax(-1) == expected.argmax(-1)))
    finite = bool(np.all(np.isfinite(exported)))
    rows = np.arange(len(split.test_y))
    test_loss = float(-np.mean(np.log(np.maximum(exported[rows, split.test_y], 1e-12))))
    counts = np.bincount(split.train_y, minlength=len(split.labels)).astype(np.float64)
    prior = (counts + 1) / (counts.sum() + len(counts))  # add-one: no label has probability 0
    prior_loss = float(-np.mean(np.log(prior[split.test_y])))
    majority = int(counts.argmax())
    metrics = measure(split.labels, split.test_y, exported.argmax(-1), majority)
    timings = []
    for ids in (tokens * LATENCY_PROBES)[:LATENCY_PROBES]:
        started = time.perf_counter()
        run_classifier(session, [ids])
        timings.append((time.perf_counter() - started) * 1000)
    checks = [
        Check(
            "parity",
            difference <= PARITY_TOLERANCE and agreement == 1.0,
            f"the graph's probabilities within {PARITY_TOLERANCE:g} of Keras' on the test texts",
            {"max_abs_difference": difference, "argmax_agreement": agreement},
        ),
        Check(
            "finite_outputs",
            finite,
            "every probability the graph gave on the test texts is finite",
            {"texts": len(test_texts)},
        ),
        Check(
            "better_than_majority",
            metrics.beats_majority,
            f"accuracy and macro F1 above always answering {metrics.majority_label!r}",
            {
                "accuracy": metrics.accuracy,
                "macro_f1": metrics.macro_f1,
                "majority_accuracy": metrics.majority_accuracy,
                "majority_macro_f1": metrics.majority_macro_f1,
            },
        ),
    ]
    return ClassifierExport(
        onnx_path=str(path),
        onnx_sha256=sha256_of(path),
        max_abs_difference=difference,
        test_loss=test_loss,
        prior_loss=prior_loss,
        latency_ms={
            "p50_ms": float(np.percentile(timings, 50)),
            "p99_ms": float(np.percentile(timings, 99)),
        },
        metrics=metrics,
        checks=checks,
    )
