"""A classifier as one ONNX graph: the sentence encoder's graph, then the head written from its
Keras weights, then a softmax.

    input_ids, attention_mask int64 [batch, sequence] -> probabilities float32 [batch, labels]

The head is a few dense layers, so it is written directly (MatMul, Add, the activation) rather
than through tf2onnx; the export is held to parity with Keras on the same texts.
"""

import math
from pathlib import Path

import numpy as np

from thunder_dagster.retrieval.graph import INPUTS, OPSET
from thunder_dagster.retrieval.graph import OUTPUT as EMBEDDINGS

PROBABILITIES = "probabilities"
PARITY_TOLERANCE = 1e-4


def head_graph(model, activation: str):
    """The Keras head (build_head's) as an ONNX model: embeddings -> probabilities."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers = [], []
    dense = [layer for layer in model.layers if layer.__class__.__name__ == "Dense"]
    x = EMBEDDINGS
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
    nodes.append(helper.make_node("Softmax", [x], [PROBABILITIES], axis=-1))
    classes = int(dense[-1].get_weights()[0].shape[1])
    dimensions = int(dense[0].get_weights()[0].shape[0])
    graph = helper.make_graph(
        nodes,
        "classifier_head",
        [helper.make_tensor_value_info(EMBEDDINGS, TensorProto.FLOAT, ["batch", dimensions])],
        [helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, ["batch", classes])],
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
    """The encoder's graph with the head after it, as one model."""
    import onnx
    from onnx import compose

    encoder = onnx.load(str(encoder_graph))
    merged = compose.merge_models(encoder, head, io_map=[(EMBEDDINGS, EMBEDDINGS)])
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
