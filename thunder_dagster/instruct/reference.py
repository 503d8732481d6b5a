"""A plain float32 forward pass of the base over its dequantized weights, with no cache and no
fused operator: the reference the ONNX graph's logits are checked against (the parity gate
and its tests). Slow on purpose; it serves checks, never users.
"""

from dataclasses import dataclass

import numpy as np

from thunder_dagster.instruct.base import PROJECTIONS, BaseFile, BaseSpec, layer_name


@dataclass(frozen=True)
class FloatWeights:
    spec: BaseSpec
    embedding: np.ndarray  # [vocab, width], tied with the output
    output_norm: np.ndarray
    layers: tuple[dict[str, np.ndarray], ...]  # projections [out, in] and the two norms


def float_weights(base: BaseFile) -> FloatWeights:
    spec = base.spec
    layers = []
    for layer in range(spec.layers):
        weights = {part: base.blocks4(layer_name(layer, part)).dequantize() for part in PROJECTIONS}
        weights["attn_norm"] = base.vector(layer_name(layer, "attn_norm"))
        weights["ffn_norm"] = base.vector(layer_name(layer, "ffn_norm"))
        layers.append(weights)
    return FloatWeights(
        spec=spec,
        embedding=base.blocks8("token_embd.weight").dequantize(),
        output_norm=base.vector("output_norm.weight"),
        layers=tuple(layers),
    )


def rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * weight


def rotate_pairs(x: np.ndarray, base: float) -> np.ndarray:
    """Rotary embedding of x [heads, positions, dim], rotating adjacent pairs (2i, 2i+1): the
    layout llama.cpp's converter leaves the q and k rows in."""
    _, positions, dim = x.shape
    frequencies = base ** (-np.arange(0, dim, 2, dtype=np.float64) / dim)
    angles = np.arange(positions)[:, None] * frequencies[None, :]
    cos, sin = np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)
    even, odd = x[..., 0::2], x[..., 1::2]
    rotated = np.empty_like(x)
    rotated[..., 0::2] = even * cos - odd * sin
    rotated[..., 1::2] = even * sin + odd * cos
    return rotated


def attention(x: np.ndarray, weights: dict, spec: BaseSpec) -> np.ndarray:
    positions, head_dim = x.shape[0], spec.head_dim
    q = (x @ weights["attn_q"].T).reshape(positions, spec.heads, head_dim).transpose(1, 0, 2)
    k = (x @ weights["attn_k"].T).reshape(positions, spec.kv_heads, head_dim).transpose(1, 0, 2)
    v = (x @ weights["attn_v"].T).reshape(positions, spec.kv_heads, head_dim).transpose(1, 0, 2)
    q, k = rotate_pairs(q, spec.rope_base), rotate_pairs(k, spec.rope_base)
    group = spec.heads // spec.kv_heads
    k, v = np.repeat(k, group, axis=0), np.repeat(v, group, axis=0)
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(head_dim)
    scores += np.triu(np.full((positions, positions), -np.inf, dtype=np.float32), k=1)
    scores -= scores.max(axis=-1, keepdims=True)
    probabilities = np.exp(scores)
    probabilities /= probabilities.sum(axis=-1, keepdims=True)
    mixed = (probabilities @ v).transpose(1, 0, 2).reshape(positions, spec.width)
    return mixed @ weights["attn_output"].T


def feed_forward(x: np.ndarray, weights: dict) -> np.ndarray:
    gate = x @ weights["ffn_gate"].T
    return (gate / (1 + np.exp(-gate)) * (x @ weights["ffn_up"].T)) @ weights["ffn_down"].T


def forward(weights: FloatWeights, ids: list[int]) -> np.ndarray:
    """Logits [positions, vocab] for the token ids, each position seeing those before it."""
    spec = weights.spec
    x = weights.embedding[np.asarray(ids)]
    for layer in weights.layers:
        x = x + attention(rms_norm(x, layer["attn_norm"], spec.eps), layer, spec)
        x = x + feed_forward(rms_norm(x, layer["ffn_norm"], spec.eps), layer)
    return rms_norm(x, weights.output_norm, spec.eps) @ weights.embedding.T


def greedy(weights: FloatWeights, ids: list[int], new_tokens: int, end_id: int) -> list[int]:
    """The reference's greedy continuation (a whole forward pass per token)."""
    produced: list[int] = []
    for _ in range(new_tokens):
        token = int(np.argmax(forward(weights, [*ids, *produced])[-1]))
        if token == end_id:
            break
        produced.append(token)
    return produced
