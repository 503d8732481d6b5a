"""A BERT sentence encoder as one ONNX graph, written from its safetensors weights.

input_ids, attention_mask int64 [batch, sequence] -> embeddings float32 [batch, dimensions]:
the encoder layers, then the mean of the token vectors under the mask, scaled to unit length
(sentence-transformers' Transformer, Pooling(mean) and Normalize modules, in that order).
Query, key and value are one matrix product per layer. No PyTorch and no TensorFlow: the
weights are numpy arrays, the graph is written with onnx.helper.
"""

import math
from dataclasses import dataclass

import numpy as np

OPSET = 17
INPUTS = ("input_ids", "attention_mask")
OUTPUT = "embeddings"


@dataclass(frozen=True)
class BertShape:
    """What config.json says about the network, checked against the weights."""

    layers: int
    hidden: int
    heads: int
    intermediate: int
    max_positions: int
    layer_norm_eps: float

    @classmethod
    def from_config(cls, config: dict) -> "BertShape":
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ValueError(
                f"config.json: model_type {config.get('model_type')!r} with activation "
                f"{config.get('hidden_act')!r}; this writer knows BERT with exact gelu only"
            )
        if config.get("position_embedding_type", "absolute") != "absolute":
            raise ValueError("config.json: only absolute position embeddings are supported")
        shape = cls(
            layers=int(config["num_hidden_layers"]),
            hidden=int(config["hidden_size"]),
            heads=int(config["num_attention_heads"]),
            intermediate=int(config["intermediate_size"]),
            max_positions=int(config["max_position_embeddings"]),
            layer_norm_eps=float(config["layer_norm_eps"]),
        )
        if shape.hidden % shape.heads:
            raise ValueError(f"config.json: {shape.hidden} wide does not split into {shape.heads}")
        return shape


def _weights_prefix(weights: dict[str, np.ndarray]) -> str:
    for prefix in ("", "bert."):
        if f"{prefix}embeddings.word_embeddings.weight" in weights:
            return prefix
    raise ValueError("the weights hold no embeddings.word_embeddings.weight: not a BERT model")


class _Builder:
    """Nodes and initializers of one ONNX graph, named as the checkpoint names its weights."""

    def __init__(self, weights: dict[str, np.ndarray], shape: BertShape):
        self.weights, self.shape = weights, shape
        self.prefix = _weights_prefix(weights)
        self.initializers: list = []
        self.nodes: list = []

    def constant(self, name: str, value) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def array(self, name: str) -> np.ndarray:
        return np.asarray(self.weights[f"{self.prefix}{name}"], dtype=np.float32)

    def weight(self, name: str, transpose: bool = False) -> str:
        array = self.array(name)
        return self.constant(name, array.T.copy() if transpose else array)

    def node(self, op: str, inputs: list[str], output: str, **attributes) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def layer_norm(self, source: str, prefix: str, out: str) -> str:
        return self.node(
            "LayerNormalization",
            [source, self.weight(f"{prefix}.weight"), self.weight(f"{prefix}.bias")],
            out,
            axis=-1,
            epsilon=self.shape.layer_norm_eps,
        )

    def dense(self, source: str, prefix: str, out: str) -> str:
        weight = self.weight(f"{prefix}.weight", transpose=True)
        product = self.node("MatMul", [source, weight], f"{out}_mm")
        return self.node("Add", [product, self.weight(f"{prefix}.bias")], out)

    def heads(self, source: str, perm: list[int]) -> str:
        """[batch, sequence, hidden] split into heads and transposed by `perm`."""
        split = self.node("Reshape", [source, "heads_shape"], f"{source}_h")
        return self.node("Transpose", [split], f"{source}_t", perm=perm)


def _constants(b: _Builder) -> None:
    shape = b.shape
    head = shape.hidden // shape.heads
    b.constant("heads_shape", np.array([0, 0, shape.heads, head], np.int64))
    b.constant("hidden_shape", np.array([0, 0, shape.hidden], np.int64))
    b.constant("split_qkv", np.array([shape.hidden] * 3, np.int64))
    b.constant("zero", np.array([0], np.int64))
    b.constant("one_axis", np.array([1], np.int64))
    b.constant("axis_last", np.array([-1], np.int64))
    b.constant("axes_mask", np.array([1, 2], np.int64))
    b.constant("one", np.array(1.0, np.float32))
    b.constant("half", np.array(0.5, np.float32))
    b.constant("sqrt2", np.array(math.sqrt(2.0), np.float32))
    b.constant("scale", np.array(1.0 / math.sqrt(head), np.float32))
    b.constant("masked", np.array(np.finfo(np.float32).min, np.float32))
    b.constant("tiny_count", np.array(1e-9, np.float32))
    b.constant("tiny_norm", np.array(1e-12, np.float32))


def _embeddings(b: _Builder) -> str:
    """Word + position (the first `sequence` rows) + token type 0, layer-normed."""
    words = b.node("Gather", [b.weight("embeddings.word_embeddings.weight"), "input_ids"], "words")
    length = b.node("Shape", ["input_ids"], "length", start=1, end=2)
    positions = b.node(
        "Slice",
        [b.weight("embeddings.position_embeddings.weight"), "zero", length, "zero"],
        "positions",
    )
    types = b.weights[f"{b.prefix}embeddings.token_type_embeddings.weight"][0:1]
    b.constant("type0", np.asarray(types, np.float32))
    summed = b.node("Add", [b.node("Add", [words, positions], "wp"), "type0"], "embedded")
    return b.layer_norm(summed, "embeddings.LayerNorm", "x0")


def _layer(b: _Builder, number: int, x: str, bias: str) -> str:
    """One transformer layer: fused QKV attention under the mask's bias, then the feed-forward
    with BERT's erf gelu, each with its residual and layer norm."""
    from onnx import helper

    at, n = f"encoder.layer.{number}", f"l{number}"
    q, k, v = (f"{at}.attention.self.{part}" for part in ("query", "key", "value"))
    fused = np.concatenate([b.array(f"{name}.weight").T for name in (q, k, v)], axis=1)
    fused_bias = np.concatenate([np.asarray(b.weights[f"{b.prefix}{m}.bias"]) for m in (q, k, v)])
    qkv = b.node("MatMul", [x, b.constant(f"{n}_qkv_w", fused)], f"{n}_qkv_mm")
    qkv = b.node("Add", [qkv, b.constant(f"{n}_qkv_b", fused_bias.astype(np.float32))], f"{n}_qkv")
    b.nodes.append(
        helper.make_node("Split", [qkv, "split_qkv"], [f"{n}_q", f"{n}_k", f"{n}_v"], axis=-1)
    )
    queries = b.node("Mul", [b.heads(f"{n}_q", [0, 2, 1, 3]), "scale"], f"{n}_qs")
    scores = b.node("MatMul", [queries, b.heads(f"{n}_k", [0, 2, 3, 1])], f"{n}_scores")
    scores = b.node("Add", [scores, bias], f"{n}_masked")
    probs = b.node("Softmax", [scores], f"{n}_probs", axis=-1)
    context = b.node("MatMul", [probs, b.heads(f"{n}_v", [0, 2, 1, 3])], f"{n}_ctx_h")
    context = b.node("Transpose", [context], f"{n}_ctx_t", perm=[0, 2, 1, 3])
    context = b.node("Reshape", [context, "hidden_shape"], f"{n}_ctx")
    attended = b.dense(context, f"{at}.attention.output.dense", f"{n}_attn")
    x = b.layer_norm(
        b.node("Add", [attended, x], f"{n}_res1"), f"{at}.attention.output.LayerNorm", f"{n}_x1"
    )
    inner = b.dense(x, f"{at}.intermediate.dense", f"{n}_inner")
    erf = b.node("Erf", [b.node("Div", [inner, "sqrt2"], f"{n}_g_div")], f"{n}_g_erf")
    gelu = b.node("Mul", [inner, b.node("Add", [erf, "one"], f"{n}_g_1")], f"{n}_g_x")
    gelu = b.node("Mul", [gelu, "half"], f"{n}_gelu")
    out = b.dense(gelu, f"{at}.output.dense", f"{n}_out")
    return b.layer_norm(b.node("Add", [out, x], f"{n}_res2"), f"{at}.output.LayerNorm", f"{n}_x2")


def bert_encoder(weights: dict[str, np.ndarray], shape: BertShape):
    """The onnx.ModelProto of the sentence encoder over `weights` (name -> array)."""
    import onnx
    from onnx import TensorProto, helper

    b = _Builder(weights, shape)
    _constants(b)
    x = _embeddings(b)
    # The padding mask as an additive bias on the scores: 0 where a token is, float min past it.
    mask = b.node("Cast", ["attention_mask"], "mask", to=TensorProto.FLOAT)
    hidden_mask = b.node("Sub", ["one", mask], "unmask")
    mask4 = b.node("Unsqueeze", [hidden_mask, "axes_mask"], "mask4")
    bias = b.node("Mul", [mask4, "masked"], "score_bias")
    for number in range(shape.layers):
        x = _layer(b, number, x, bias)
    # Mean over the tokens the mask keeps, then unit length.
    weights3 = b.node("Unsqueeze", [mask, "axis_last"], "mask3")
    kept = b.node("Mul", [x, weights3], "kept")
    total = b.node("ReduceSum", [kept, "one_axis"], "total", keepdims=0)
    count = b.node("ReduceSum", [weights3, "one_axis"], "count", keepdims=0)
    mean = b.node("Div", [total, b.node("Max", [count, "tiny_count"], "count_safe")], "mean")
    norm = b.node("ReduceL2", [mean], "norm", axes=[-1], keepdims=1)
    b.node("Div", [mean, b.node("Max", [norm, "tiny_norm"], "norm_safe")], OUTPUT)

    graph = helper.make_graph(
        b.nodes,
        "sentence_encoder",
        [
            helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
            for name in INPUTS
        ],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", shape.hidden])],
        b.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
