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


def bert_encoder(weights: dict[str, np.ndarray], shape: BertShape):
    """The onnx.ModelProto of the sentence encoder over `weights` (name -> array)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    p = _weights_prefix(weights)
    initializers: list = []
    nodes: list = []

    def constant(name: str, value) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def weight(name: str, transpose: bool = False) -> str:
        array = np.asarray(weights[f"{p}{name}"], dtype=np.float32)
        return constant(name, array.T.copy() if transpose else array)

    def node(op: str, inputs: list[str], output: str, **attributes) -> str:
        nodes.append(helper.make_node(op, inputs, [output], **attributes))
        return output

    def layer_norm(source: str, prefix: str, out: str) -> str:
        return node(
            "LayerNormalization",
            [source, weight(f"{prefix}.weight"), weight(f"{prefix}.bias")],
            out,
            axis=-1,
            epsilon=shape.layer_norm_eps,
        )

    def dense(source: str, prefix: str, out: str) -> str:
        product = node("MatMul", [source, weight(f"{prefix}.weight", transpose=True)], f"{out}_mm")
        return node("Add", [product, weight(f"{prefix}.bias")], out)

    def heads(source: str, perm: list[int]) -> str:
        """[batch, sequence, hidden] split into heads and transposed by `perm`."""
        return node(
            "Transpose",
            [node("Reshape", [source, "heads_shape"], f"{source}_h")],
            f"{source}_t",
            perm=perm,
        )

    head = shape.hidden // shape.heads
    constant("heads_shape", np.array([0, 0, shape.heads, head], np.int64))
    constant("hidden_shape", np.array([0, 0, shape.hidden], np.int64))
    constant("split_qkv", np.array([shape.hidden] * 3, np.int64))
    constant("zero", np.array([0], np.int64))
    constant("one_axis", np.array([1], np.int64))
    constant("axis_last", np.array([-1], np.int64))
    constant("axes_mask", np.array([1, 2], np.int64))
    constant("one", np.array(1.0, np.float32))
    constant("half", np.array(0.5, np.float32))
    constant("sqrt2", np.array(math.sqrt(2.0), np.float32))
    constant("scale", np.array(1.0 / math.sqrt(head), np.float32))
    constant("masked", np.array(np.finfo(np.float32).min, np.float32))
    constant("tiny_count", np.array(1e-9, np.float32))
    constant("tiny_norm", np.array(1e-12, np.float32))

    # Embeddings: word + position (the first `sequence` rows) + token type 0, layer-normed.
    words = node("Gather", [weight("embeddings.word_embeddings.weight"), "input_ids"], "words")
    length = node("Shape", ["input_ids"], "length", start=1, end=2)
    positions = node(
        "Slice",
        [weight("embeddings.position_embeddings.weight"), "zero", length, "zero"],
        "positions",
    )
    types = weights[f"{p}embeddings.token_type_embeddings.weight"][0:1]
    constant("type0", np.asarray(types, np.float32))
    summed = node("Add", [node("Add", [words, positions], "wp"), "type0"], "embedded")
    x = layer_norm(summed, "embeddings.LayerNorm", "x0")

    # The padding mask as an additive bias on the scores: 0 where a token is, float min past it.
    mask = node("Cast", ["attention_mask"], "mask", to=TensorProto.FLOAT)
    hidden_mask = node("Sub", ["one", mask], "unmask")
    mask4 = node("Unsqueeze", [hidden_mask, "axes_mask"], "mask4")
    bias = node("Mul", [mask4, "masked"], "score_bias")

    for number in range(shape.layers):
        at = f"encoder.layer.{number}"
        q, k, v = (f"{at}.attention.self.{part}" for part in ("query", "key", "value"))
        fused = np.concatenate(
            [np.asarray(weights[f"{p}{name}.weight"], np.float32).T for name in (q, k, v)], axis=1
        )
        fused_bias = np.concatenate([np.asarray(weights[f"{p}{name}.bias"]) for name in (q, k, v)])
        qkv = node("MatMul", [x, constant(f"l{number}_qkv_w", fused)], f"l{number}_qkv_mm")
        qkv = node(
            "Add",
            [qkv, constant(f"l{number}_qkv_b", fused_bias.astype(np.float32))],
            f"l{number}_qkv",
        )
        nodes.append(
            helper.make_node(
                "Split",
                [qkv, "split_qkv"],
                [f"l{number}_q", f"l{number}_k", f"l{number}_v"],
                axis=-1,
            )
        )

        queries = node("Mul", [heads(f"l{number}_q", [0, 2, 1, 3]), "scale"], f"l{number}_qs")
        scores = node("MatMul", [queries, heads(f"l{number}_k", [0, 2, 3, 1])], f"l{number}_scores")
        scores = node("Add", [scores, bias], f"l{number}_masked")
        probs = node("Softmax", [scores], f"l{number}_probs", axis=-1)
        context = node("MatMul", [probs, heads(f"l{number}_v", [0, 2, 1, 3])], f"l{number}_ctx_h")
        context = node("Transpose", [context], f"l{number}_ctx_t", perm=[0, 2, 1, 3])
        context = node("Reshape", [context, "hidden_shape"], f"l{number}_ctx")
        attended = dense(context, f"{at}.attention.output.dense", f"l{number}_attn")
        x = layer_norm(
            node("Add", [attended, x], f"l{number}_res1"),
            f"{at}.attention.output.LayerNorm",
            f"l{number}_x1",
        )
        inner = dense(x, f"{at}.intermediate.dense", f"l{number}_inner")
        # gelu, the erf form BERT uses
        erf = node("Erf", [node("Div", [inner, "sqrt2"], f"l{number}_g_div")], f"l{number}_g_erf")
        gelu = node("Mul", [inner, node("Add", [erf, "one"], f"l{number}_g_1")], f"l{number}_g_x")
        gelu = node("Mul", [gelu, "half"], f"l{number}_gelu")
        out = dense(gelu, f"{at}.output.dense", f"l{number}_out")
        x = layer_norm(
            node("Add", [out, x], f"l{number}_res2"), f"{at}.output.LayerNorm", f"l{number}_x2"
        )

    # Mean over the tokens the mask keeps, then unit length.
    weights3 = node("Unsqueeze", [mask, "axis_last"], "mask3")
    total = node("ReduceSum", [node("Mul", [x, weights3], "kept"), "one_axis"], "total", keepdims=0)
    count = node("ReduceSum", [weights3, "one_axis"], "count", keepdims=0)
    mean = node("Div", [total, node("Max", [count, "tiny_count"], "count_safe")], "mean")
    norm = node("ReduceL2", [mean], "norm", axes=[-1], keepdims=1)
    node("Div", [mean, node("Max", [norm, "tiny_norm"], "norm_safe")], OUTPUT)

    graph = helper.make_graph(
        nodes,
        "sentence_encoder",
        [
            helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
            for name in INPUTS
        ],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", shape.hidden])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model
