"""An agent's adapter as files, and as the inputs of the adapted base graph.

The folder holds `adapter.npz` (for each adapted projection `<layer>.<projection>`, A [in, rank]
and B [rank, out] with alpha / rank already multiplied in) and `adapter.json` (the shape, the
npz's sha256 and size). The graph's projections are grouped as it multiplies them (q, k and v
as one matrix; gate and up as one): a group's inputs are its adapted projections' A side by side
and their B as a block matrix, zeros where a projection has no adapter.
"""

import dataclasses
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thunder_dagster.adapters.keras_base import AdapterShape
from thunder_dagster.files import sha256_of, write_atomically
from thunder_dagster.instruct.base import BaseSpec
from thunder_dagster.instruct.graphs import adapter_inputs

ARRAYS_NAME = "adapter.npz"
MANIFEST_NAME = "adapter.json"
# The graph's projection groups (its matmul names), each with the projections it stacks.
GROUPS = {
    "qkv": ("attn_q", "attn_k", "attn_v"),
    "attn_output": ("attn_output",),
    "gate_up": ("ffn_gate", "ffn_up"),
    "ffn_down": ("ffn_down",),
}


class AdapterFileError(ValueError):
    """An adapter folder that cannot be served: says which file and why."""


def widths(spec: BaseSpec) -> dict[str, tuple[int, int]]:
    """Each projection's (in, out)."""
    attention = spec.heads * spec.head_dim
    kv = spec.kv_heads * spec.head_dim
    return {
        "attn_q": (spec.width, attention),
        "attn_k": (spec.width, kv),
        "attn_v": (spec.width, kv),
        "attn_output": (attention, spec.width),
        "ffn_gate": (spec.width, spec.ffn),
        "ffn_up": (spec.width, spec.ffn),
        "ffn_down": (spec.ffn, spec.width),
    }


@dataclass(frozen=True)
class Adapter:
    shape: AdapterShape
    arrays: dict[str, tuple[np.ndarray, np.ndarray]]  # "<layer>.<projection>" -> (A, B)

    @property
    def parameters(self) -> int:
        return sum(a.size + b.size for a, b in self.arrays.values())

    def save(self, folder: Path) -> dict:
        """Write both files; the manifest's contents."""
        buffer = io.BytesIO()
        flat = {}
        for key, (a, b) in self.arrays.items():
            flat[f"{key}.a"], flat[f"{key}.b"] = a, b
        np.savez(buffer, **flat)
        folder.mkdir(parents=True, exist_ok=True)
        write_atomically(folder / ARRAYS_NAME, buffer.getvalue())
        manifest = {
            "shape": dataclasses.asdict(self.shape),
            "parameters": self.parameters,
            "bytes": len(buffer.getvalue()),
            "sha256": sha256_of(folder / ARRAYS_NAME),
        }
        write_atomically(folder / MANIFEST_NAME, json.dumps(manifest, indent=2).encode())
        return manifest

    @classmethod
    def load(cls, folder: Path, spec: BaseSpec) -> "Adapter":
        """The adapter in `folder`, its hash and every matrix's shape checked against `spec`."""
        manifest_path, arrays_path = folder / MANIFEST_NAME, folder / ARRAYS_NAME
        try:
            manifest = json.loads(manifest_path.read_text())
            shape = AdapterShape(
                **{**manifest["shape"], "targets": tuple(manifest["shape"]["targets"])}
            )
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise AdapterFileError(
                f"{manifest_path} is unreadable ({error}): retrain the adapter"
            ) from error
        if not arrays_path.is_file() or sha256_of(arrays_path) != manifest.get("sha256"):
            raise AdapterFileError(
                f"{arrays_path} is missing or does not match the sha256 in {manifest_path}"
            )
        with np.load(arrays_path) as stored:
            arrays = {
                key[:-2]: (stored[key], stored[key[:-2] + ".b"])
                for key in stored
                if key.endswith(".a")
            }
        expected = widths(spec)
        for key, (a, b) in arrays.items():
            layer, _, projection = key.partition(".")
            ins, outs = expected.get(projection, (None, None))
            if (
                not layer.isdigit()
                or int(layer) >= spec.layers
                or a.shape != (ins, shape.rank)
                or b.shape != (shape.rank, outs)
            ):
                raise AdapterFileError(
                    f"{arrays_path}: {key} has shapes {a.shape} and {b.shape}, which do not fit "
                    f"the base: retrain the adapter"
                )
        return cls(shape=shape, arrays=arrays)


def graph_feeds(adapter: Adapter | None, spec: BaseSpec) -> dict[str, np.ndarray]:
    """The adapted graph's adapter inputs for `adapter` (all zeros, rank 1, for None)."""
    arrays = adapter.arrays if adapter is not None else {}
    sizes = widths(spec)
    feeds = {}
    for layer in range(spec.layers):
        for group, projections in GROUPS.items():
            ins = sizes[projections[0]][0]
            outs = [sizes[p][1] for p in projections]
            present = [
                (i, arrays[f"{layer}.{p}"])
                for i, p in enumerate(projections)
                if f"{layer}.{p}" in arrays
            ]
            rank = sum(a.shape[1] for _, (a, _) in present) or 1
            a_group = np.zeros((ins, rank), np.float32)
            b_group = np.zeros((rank, sum(outs)), np.float32)
            row = 0
            for index, (a, b) in present:
                column = sum(outs[:index])
                a_group[:, row : row + a.shape[1]] = a
                b_group[row : row + a.shape[1], column : column + outs[index]] = b
                row += a.shape[1]
            a_name, b_name = adapter_inputs(f"layer{layer}.{group}")
            feeds[a_name], feeds[b_name] = a_group, b_group
    return feeds
