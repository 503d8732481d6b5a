"""The instruct base as a Keras model on TensorFlow (the project's training stack), from its
dequantized weights, with Keras' own low-rank adapters (`Dense.enable_lora`) on the chosen
projections. The frozen weights are the GGUF file's values exactly as the ONNX graph reads
them (Q4_1 and Q8_0 blocks dequantized), so with a zero adapter this model's logits are the
graph's (tests/adapters/test_keras_base.py holds them to that).

keras-hub's Llama backbone was not used: its 0.32 wheel pulls tensorflow-text, kagglehub,
kagglesdk, sentencepiece and tokenizers into the environment, expects the Hugging Face layout
of the rotary rows (the file keeps llama.cpp's adjacent pairs), and adapts only the query and
value projections. The decoder block is a few dozen lines of keras.ops.
"""

from dataclasses import dataclass

import numpy as np

from thunder_dagster.instruct.base import PROJECTIONS, BaseSpec
from thunder_dagster.instruct.graphs import rotary_cache

# The attention's projections: one of the search's choices of targets (adapt.TARGETS).
ATTENTION = ("attn_q", "attn_k", "attn_v", "attn_output")
# Large and finite: a causal mask of -inf turns a fully masked row into NaN. It is applied with
# `where`, not added: TensorFlow's oneDNN rewrite fuses a batched matmul with a broadcast add
# into a kernel that took 50 times longer than the matmul and the select on two cores.
MASKED = -1e9


@dataclass(frozen=True)
class AdapterShape:
    """Which projections get an adapter, of which rank, scaled by alpha / rank (LoRA)."""

    rank: int
    alpha: float
    targets: tuple[str, ...] = PROJECTIONS

    def __post_init__(self):
        unknown = set(self.targets) - set(PROJECTIONS)
        if unknown or not self.targets:
            raise ValueError(
                f"adapter targets {sorted(unknown) or '(none)'}: choose among {PROJECTIONS}"
            )
        if self.rank < 1:
            raise ValueError(f"adapter rank {self.rank}: use 1 or more")

    @property
    def scale(self) -> float:
        return self.alpha / self.rank


def _rotate_pairs(x, cos, sin):
    """x [batch, positions, heads, dim] rotated on adjacent pairs (2i, 2i+1)."""
    from thunder_dagster.modeling.backend import keras

    ops = keras.ops

    shape = ops.shape(x)
    pairs = ops.reshape(x, (shape[0], shape[1], shape[2], -1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    cos, sin = cos[None, :, None, :], sin[None, :, None, :]
    rotated = ops.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1)
    return ops.reshape(rotated, shape)


def _block_class():
    from thunder_dagster.modeling.backend import keras

    ops = keras.ops

    class DecoderBlock(keras.layers.Layer):
        """Pre-norm attention (grouped queries, rotary pairs, causal) and a SwiGLU feed-forward."""

        def __init__(self, spec: BaseSpec, **kwargs):
            super().__init__(**kwargs)
            self.spec = spec
            heads, kv, dim = spec.heads, spec.kv_heads, spec.head_dim
            widths = {
                "attn_q": heads * dim,
                "attn_k": kv * dim,
                "attn_v": kv * dim,
                "attn_output": spec.width,
                "ffn_gate": spec.ffn,
                "ffn_up": spec.ffn,
                "ffn_down": spec.width,
            }
            self.projections = {
                name: keras.layers.Dense(units, use_bias=False, name=name)
                for name, units in widths.items()
            }
            self.attn_norm = keras.layers.RMSNormalization(epsilon=spec.eps, name="attn_norm")
            self.ffn_norm = keras.layers.RMSNormalization(epsilon=spec.eps, name="ffn_norm")

        def build(self, input_shape):
            spec = self.spec
            for name, layer in self.projections.items():
                layer.build((None, None, spec.ffn if name == "ffn_down" else spec.width))
            self.attn_norm.build(input_shape)
            self.ffn_norm.build(input_shape)
            super().build(input_shape)

        def project(self, name, x):
            """x @ W, plus x @ A @ B * scale where the projection has an adapter: the low-rank
            branch beside the frozen kernel, so the backward pass never forms a gradient of
            W's size (Keras' Dense merges A @ B into the kernel, which costs a third more)."""
            layer = self.projections[name]
            if not layer.lora_enabled:
                return layer(x)
            low = ops.matmul(ops.matmul(x, layer.lora_kernel_a), layer.lora_kernel_b)
            return ops.matmul(x, layer._kernel) + low * (layer.lora_alpha / layer.lora_rank)

        def call(self, x, cos, sin, mask):
            spec, p = self.spec, self.project
            batch, positions = ops.shape(x)[0], ops.shape(x)[1]
            normed = self.attn_norm(x)
            q = ops.reshape(p("attn_q", normed), (batch, positions, spec.heads, spec.head_dim))
            k = ops.reshape(p("attn_k", normed), (batch, positions, spec.kv_heads, spec.head_dim))
            v = ops.reshape(p("attn_v", normed), (batch, positions, spec.kv_heads, spec.head_dim))
            q, k = _rotate_pairs(q, cos, sin), _rotate_pairs(k, cos, sin)
            group = spec.heads // spec.kv_heads
            k, v = ops.repeat(k, group, axis=2), ops.repeat(v, group, axis=2)
            # Heads first, then batched matmuls: TensorFlow's einsum for the mixing
            # ("bhqk,bkhd->bqhd") took 40 times longer than these on two cores.
            q, k, v = (ops.transpose(t, (0, 2, 1, 3)) for t in (q, k, v))
            scores = ops.matmul(q, ops.transpose(k, (0, 1, 3, 2))) / float(np.sqrt(spec.head_dim))
            weights = ops.softmax(ops.where(mask, scores, MASKED), axis=-1)
            mixed = ops.transpose(ops.matmul(weights, v), (0, 2, 1, 3))
            mixed = ops.reshape(mixed, (batch, positions, spec.width))
            x = x + p("attn_output", mixed)
            normed = self.ffn_norm(x)
            hidden = ops.silu(p("ffn_gate", normed)) * p("ffn_up", normed)
            return x + p("ffn_down", hidden)

    return DecoderBlock


class KerasBase:
    """The base's layers and its frozen weights; `hidden(ids)` gives the final normed states
    [batch, positions, width], `logits` multiplies them by the tied embedding."""

    def __init__(self, weights, shape: AdapterShape | None = None, positions: int = 1024):
        from thunder_dagster.modeling.backend import keras

        spec = weights.spec
        self.spec, self.shape, self.positions = spec, shape, positions
        block = _block_class()
        self.embedding = keras.Variable(weights.embedding, trainable=False, name="embedding")
        self.blocks = []
        for number, layer_weights in enumerate(weights.layers):
            layer = block(spec, name=f"block{number}", trainable=True)
            layer.build((None, None, spec.width))
            for name, projection in layer.projections.items():
                projection.set_weights([layer_weights[name].T])
                projection.trainable = False
            layer.attn_norm.set_weights([layer_weights["attn_norm"]])
            layer.ffn_norm.set_weights([layer_weights["ffn_norm"]])
            layer.attn_norm.trainable = layer.ffn_norm.trainable = False
            if shape is not None:
                for name in shape.targets:
                    projection = layer.projections[name]
                    projection.trainable = True
                    projection.enable_lora(shape.rank, lora_alpha=shape.alpha)
            self.blocks.append(layer)
        self.output_norm = keras.layers.RMSNormalization(epsilon=spec.eps, trainable=False)
        self.output_norm.build((None, None, spec.width))
        self.output_norm.set_weights([weights.output_norm])
        cos, sin = rotary_cache(positions, spec.head_dim, spec.rope_base)
        self.cos, self.sin = cos, sin

    @property
    def trainable_variables(self) -> list:
        return [
            variable
            for block in self.blocks
            for projection in block.projections.values()
            for variable in projection.trainable_variables
        ]

    def hidden(self, ids):
        from thunder_dagster.modeling.backend import keras

        ops = keras.ops

        positions = ops.shape(ids)[1]
        x = ops.take(self.embedding, ids, axis=0)
        cos = ops.convert_to_tensor(self.cos)[:positions]
        sin = ops.convert_to_tensor(self.sin)[:positions]
        causal = np.tril(np.ones((self.positions, self.positions), dtype=bool))
        mask = ops.convert_to_tensor(causal)[None, None, :positions, :positions]
        for block in self.blocks:
            x = block(x, cos, sin, mask)
        return self.output_norm(x)

    def logits(self, hidden):
        from thunder_dagster.modeling.backend import keras

        ops = keras.ops

        return ops.matmul(hidden, ops.transpose(self.embedding))

    def adapter_arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Each adapted projection's (A [in, rank], B [rank, out] times the scale): the delta
        a projection adds to x @ W is x @ A @ B."""
        if self.shape is None:
            return {}
        arrays = {}
        for number, block in enumerate(self.blocks):
            for name in self.shape.targets:
                projection = block.projections[name]
                a = np.asarray(projection.lora_kernel_a.numpy(), dtype=np.float32)
                b = np.asarray(projection.lora_kernel_b.numpy(), dtype=np.float32)
                arrays[f"{number}.{name}"] = (a, b * np.float32(self.shape.scale))
        return arrays

    def load_adapter_arrays(self, arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """Set the adapter from (A, scaled B) pairs, as adapter_arrays gives them."""
        scale = np.float32(self.shape.scale)
        for key, (a, b) in arrays.items():
            number, name = key.split(".", 1)
            projection = self.blocks[int(number)].projections[name]
            projection.lora_kernel_a.assign(a)
            projection.lora_kernel_b.assign(b / scale)
