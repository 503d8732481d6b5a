"""The base as one ONNX graph with a key/value cache, run by onnxruntime like every other model
here. The weights keep their stored blocks, so nothing is quantised twice:

- each projection's Q4_1 blocks (value = scale * q + minimum) become a 4-bit `MatMulNBits` of
  their 4-bit values plus a small product for each block's offset (`_Builder.matmul4`);
- the tied Q8_0 embedding (value = scale * q) is read by `GatherBlockQuantized` and, as the
  output projection, multiplied by an 8-bit `MatMulNBits` (q shifted to unsigned, zero 128);
- attention is onnxruntime's `GroupQueryAttention`: 9 query heads over 3 key/value heads, the
  rotary embedding on adjacent pairs (the layout of llama.cpp's converter), the cache passed in
  as `past_*` and returned as `present_*`.

One graph serves the prompt (prefill, all its tokens at once) and each next token (decode):
`input_ids` [1, S] after `past` tokens, `seqlens_k` = [past + S - 1], `total_sequence_length` =
past + S. It returns the logits of the last position only.
"""

import numpy as np

from thunder_dagster.instruct.base import QK, BaseFile, BaseSpec, Blocks4, layer_name

OPSET, MS_OPSET = 21, 1
# MatMulNBits' accuracy level 4 quantises activations to int8 per block for the 4-bit matrix
# products (onnxruntime's fast CPU path); 0 keeps them float.
DEFAULT_ACCURACY_LEVEL = 0
OUTPUT_ACCURACY_LEVEL = 4
# How many of the 8-bit output's highest logits are computed again in float.
CANDIDATES = 64


def kv_names(layer: int) -> tuple[str, str, str, str]:
    return (
        f"past_key_{layer}",
        f"past_value_{layer}",
        f"present_key_{layer}",
        f"present_value_{layer}",
    )


def _pack4(q: np.ndarray) -> np.ndarray:
    """uint8 [N, K] of 4-bit values to MatMulNBits' [N, K/32, 16]: value 2i in byte i's low
    nibble, 2i+1 in its high nibble."""
    rows, cols = q.shape
    packed = (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)
    return packed.reshape(rows, cols // QK, QK // 2)


def _stacked(*matrices: Blocks4) -> Blocks4:
    """Matrices that read the same input, as one (their outputs side by side)."""
    return Blocks4(
        q=np.concatenate([m.q for m in matrices]),
        scale=np.concatenate([m.scale for m in matrices]),
        minimum=np.concatenate([m.minimum for m in matrices]),
    )


def adapter_inputs(name: str) -> tuple[str, str]:
    """The inputs that carry an agent's low-rank adapter of the projection group `name`
    (thunder_dagster/adapters/files.py lays them out): A [in, rank] and B [rank, out]."""
    return f"{name}.adapter_a", f"{name}.adapter_b"


class _Builder:
    def __init__(self, accuracy_level: int, adapted: bool = False):
        self.nodes, self.initializers = [], []
        self.accuracy_level = accuracy_level
        self.summing: dict[int, str] = {}
        # With `adapted`, every projection adds x @ A @ B from two inputs of its own (an
        # agent's adapter, zeros for none): one loaded graph serves every agent's adapter.
        self.adapted = adapted
        self.adapter_inputs: list = []

    def constant(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], outputs: list[str], domain: str = "", **attrs):
        from onnx import helper

        name = f"{op}_{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, outputs, name=name, domain=domain, **attrs))
        return outputs[0]

    def embedding_rows(self, ids: str, out: str) -> str:
        """The embedding's rows for token ids, from its 8-bit blocks (float out)."""
        return self.node(
            "GatherBlockQuantized",
            ["embedding.q", ids, "embedding.scale", "embedding.zero"],
            [out],
            domain="com.microsoft",
            bits=8,
            block_size=QK,
            gather_axis=0,
            quantize_axis=1,
        )

    def block_summing(self, width: int) -> str:
        """The [K, K/32] matrix of ones that sums each 32-value block of an input."""
        if width not in self.summing:
            ones = np.kron(np.eye(width // QK, dtype=np.float32), np.ones((QK, 1), np.float32))
            self.summing[width] = self.constant(f"block_sums.{width}", ones)
        return self.summing[width]

    def matmul4(self, x: str, name: str, blocks: Blocks4) -> str:
        """x @ W.T for a Q4_1 matrix W, exactly: per block W = scale * (q - 8) + offset, where
        offset = minimum + 8 * scale. MatMulNBits takes the first term with its default zero
        point (its fast path: float zero points are many times slower), a small float product
        of x's block sums and the offsets the second."""
        rows, cols = blocks.q.shape
        product = self.node(
            "MatMulNBits",
            [
                x,
                self.constant(f"{name}.q", _pack4(blocks.q)),
                self.constant(f"{name}.scale", blocks.scale.reshape(-1)),
            ],
            [f"{name}.scaled"],
            domain="com.microsoft",
            K=cols,
            N=rows,
            bits=4,
            block_size=QK,
            accuracy_level=self.accuracy_level,
        )
        sums = self.node("MatMul", [x, self.block_summing(cols)], [f"{name}.sums"])
        offsets = (blocks.minimum + 8 * blocks.scale).T.astype(np.float32)  # [K/32, N]
        shift = self.node(
            "MatMul", [sums, self.constant(f"{name}.offset", offsets)], [f"{name}.shift"]
        )
        if not self.adapted:
            return self.node("Add", [product, shift], [name])
        base = self.node("Add", [product, shift], [f"{name}.base"])
        return self.node("Add", [base, self.low_rank(x, name, cols, rows)], [name])

    def low_rank(self, x: str, name: str, cols: int, rows: int) -> str:
        from onnx import TensorProto, helper

        a, b = adapter_inputs(name)
        rank = f"{name}.rank"
        self.adapter_inputs += [
            helper.make_tensor_value_info(a, TensorProto.FLOAT, [cols, rank]),
            helper.make_tensor_value_info(b, TensorProto.FLOAT, [rank, rows]),
        ]
        low = self.node("MatMul", [x, a], [f"{name}.low"])
        return self.node("MatMul", [low, b], [f"{name}.delta"])

    def norm(self, x: str, weight: np.ndarray, eps: float, name: str) -> str:
        gamma = self.constant(f"{name}.gamma", weight)
        return self.node("SimplifiedLayerNormalization", [x, gamma], [name], axis=-1, epsilon=eps)

    def add_norm(self, x: str, skip: str, weight: np.ndarray, eps: float, name: str):
        """(norm(x + skip), x + skip) in one node."""
        gamma = self.constant(f"{name}.gamma", weight)
        normed, total = f"{name}", f"{name}.residual"
        self.node(
            "SkipSimplifiedLayerNormalization",
            [x, skip, gamma],
            [normed, "", "", total],
            domain="com.microsoft",
            epsilon=eps,
        )
        return normed, total


def rotary_cache(positions: int, dim: int, base: float) -> tuple[np.ndarray, np.ndarray]:
    """cos and sin [positions, dim / 2] of each position's rotation of each adjacent pair."""
    frequencies = base ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    angles = np.arange(positions)[:, None] * frequencies[None, :]
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def _io(spec: BaseSpec):
    from onnx import TensorProto, helper

    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1, "sequence"]),
        helper.make_tensor_value_info("seqlens_k", TensorProto.INT32, [1]),
        helper.make_tensor_value_info("total_sequence_length", TensorProto.INT32, []),
    ]
    outputs = [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, 1, spec.vocab])]
    cache_shape = [1, spec.kv_heads, "past", spec.head_dim]
    present_shape = [1, spec.kv_heads, "total", spec.head_dim]
    for layer in range(spec.layers):
        past_k, past_v, present_k, present_v = kv_names(layer)
        inputs += [
            helper.make_tensor_value_info(past_k, TensorProto.FLOAT, cache_shape),
            helper.make_tensor_value_info(past_v, TensorProto.FLOAT, cache_shape),
        ]
        outputs += [
            helper.make_tensor_value_info(present_k, TensorProto.FLOAT, present_shape),
            helper.make_tensor_value_info(present_v, TensorProto.FLOAT, present_shape),
        ]
    return inputs, outputs


def _layer(b: _Builder, base: BaseFile, layer: int, normed: str) -> str:
    """One decoder block from its normed input to its feed-forward output (the residual adds
    are the callers': they fuse with the next norm)."""
    spec = base.spec
    past_k, past_v, present_k, present_v = kv_names(layer)
    part = lambda name: base.blocks4(layer_name(layer, name))  # noqa: E731
    prefix = f"layer{layer}"
    qkv = b.matmul4(
        normed, f"{prefix}.qkv", _stacked(part("attn_q"), part("attn_k"), part("attn_v"))
    )
    mixed = b.node(
        "GroupQueryAttention",
        [
            qkv,
            "",
            "",
            past_k,
            past_v,
            "seqlens_k",
            "total_sequence_length",
            "cos_cache",
            "sin_cache",
        ],
        [f"{prefix}.mixed", present_k, present_v],
        domain="com.microsoft",
        num_heads=spec.heads,
        kv_num_heads=spec.kv_heads,
        do_rotary=1,
        rotary_interleaved=1,
        scale=float(1 / np.sqrt(spec.head_dim)),
    )
    return mixed


def _output(b: _Builder, last: str, unsigned: np.ndarray, scale: np.ndarray, spec) -> None:
    """The tied output projection in 8 bits (int8 activations: the fast path), then the
    CANDIDATES highest logits computed again in float from their embedding rows and written
    over their 8-bit values: greedy choices and top-p sampling read exact logits, and the
    full matrix is never multiplied in float."""
    approximate = b.node(
        "MatMulNBits",
        [
            last,
            b.constant("output.q", unsigned.reshape(spec.vocab, -1, QK)),
            b.constant("output.scale", scale.reshape(-1)),
        ],
        ["approximate"],
        domain="com.microsoft",
        K=spec.width,
        N=spec.vocab,
        bits=8,
        block_size=QK,
        accuracy_level=OUTPUT_ACCURACY_LEVEL,
    )
    count = b.constant("candidates.k", np.array([CANDIDATES], np.int64))
    b.node("TopK", [approximate, count], ["candidates.values", "candidates"], axis=-1)
    rows = b.embedding_rows("candidates", "candidates.rows")  # [1, 1, k, width]
    column = b.node(
        "Unsqueeze", [last, b.constant("column.axis", np.array([-1], np.int64))], ["column"]
    )
    exact = b.node("MatMul", [rows, column], ["candidates.exact4"])  # [1, 1, k, 1]
    squeezed = b.node("Squeeze", [exact, "column.axis"], ["candidates.exact"])
    b.node("ScatterElements", [approximate, "candidates", squeezed], ["logits"], axis=-1)


def build_graph(
    base: BaseFile,
    accuracy_level: int = DEFAULT_ACCURACY_LEVEL,
    positions: int | None = None,
    exact: bool = False,
    adapted: bool = False,
):
    """The ModelProto of the base; `positions` bounds the context (the file's by default).
    `exact` multiplies the output in float (the parity reference's graph) instead of 8-bit;
    `adapted` gives every projection group an adapter's two inputs (adapter_inputs)."""
    from onnx import helper

    spec = base.spec
    b = _Builder(accuracy_level, adapted)
    embedding = base.blocks8("token_embd.weight")
    unsigned = (embedding.q.astype(np.int16) + 128).astype(np.uint8)
    b.constant("embedding.q", unsigned)
    b.constant("embedding.scale", embedding.scale)
    b.constant("embedding.zero", np.full(embedding.scale.shape, 128, dtype=np.uint8))
    x = b.embedding_rows("input_ids", "embedded")
    cos, sin = rotary_cache(positions or spec.context, spec.head_dim, spec.rope_base)
    b.constant("cos_cache", cos)
    b.constant("sin_cache", sin)
    inputs, outputs = _io(spec)
    normed = b.norm(x, base.vector(layer_name(0, "attn_norm")), spec.eps, "layer0.attn_in")
    for layer in range(spec.layers):
        prefix = f"layer{layer}"
        part = lambda name, layer=layer: base.blocks4(layer_name(layer, name))  # noqa: E731
        mixed = _layer(b, base, layer, normed)
        attended = b.matmul4(mixed, f"{prefix}.attn_output", part("attn_output"))
        ffn_norm = base.vector(layer_name(layer, "ffn_norm"))
        normed, x = b.add_norm(x, attended, ffn_norm, spec.eps, f"{prefix}.ffn_in")
        gate_up = b.matmul4(normed, f"{prefix}.gate_up", _stacked(part("ffn_gate"), part("ffn_up")))
        halves = b.constant(f"{prefix}.halves", np.array([spec.ffn, spec.ffn], np.int64))
        gate, up = f"{prefix}.gate", f"{prefix}.up"
        b.node("Split", [gate_up, halves], [gate, up], axis=-1)
        sigmoid = b.node("Sigmoid", [gate], [f"{prefix}.sigmoid"])
        swish = b.node("Mul", [gate, sigmoid], [f"{prefix}.swish"])
        hidden = b.node("Mul", [swish, up], [f"{prefix}.hidden"])
        down = b.matmul4(hidden, f"{prefix}.ffn_down", part("ffn_down"))
        following = (
            layer_name(layer + 1, "attn_norm") if layer + 1 < spec.layers else "output_norm.weight"
        )
        normed, x = b.add_norm(
            x, down, base.vector(following), spec.eps, f"layer{layer + 1}.attn_in"
        )
    last = b.node(
        "Slice",
        [
            normed,
            b.constant("last.start", np.array([-1], dtype=np.int64)),
            b.constant("last.end", np.array([np.iinfo(np.int64).max], dtype=np.int64)),
            b.constant("last.axis", np.array([1], dtype=np.int64)),
        ],
        ["last"],
    )
    if exact:
        # MatMulNBits has no fast 8-bit path with float activations: the exact graph
        # multiplies by the dequantized embedding in float.
        transposed = b.constant("output.float", embedding.dequantize().T.copy())
        b.node("MatMul", [last, transposed], ["logits"])
    else:
        _output(b, last, unsigned, embedding.scale, spec)
    inputs += b.adapter_inputs
    graph = helper.make_graph(b.nodes, "instruct_base", inputs, outputs, b.initializers)
    return helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", OPSET),
            helper.make_opsetid("com.microsoft", MS_OPSET),
        ],
        producer_name="thunder-dagster",
    )
