"""The retrieval index of one agent: BM25 over the chunk texts (bm25s) and nearest neighbours
over their vectors (usearch's HNSW graph, or exact search below APPROXIMATE_FROM chunks, where
it is as fast), fused by adding the two standardised scores, the vectors' weighted by how much
they help on this index's own known-item queries (fit_vector_weight, at build time).

One index is a folder, written whole and then pointed at, as models are:

    retrieval/<agent>/indexes/<version>/
        manifest.json   IndexManifest       chunks.json   the ChunkRecords, in row order
        vectors.npy     float32 [n, d]      vectors.usearch (when approximate)   bm25/
    retrieval/<agent>/current.json          {"version": ...}: the index the server serves
"""

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from thunder_dagster.files import write_atomically
from thunder_dagster.retrieval.quality import DEPTH, known_items
from thunder_dagster.retrieval.vectors import ChunkRecord
from thunder_dagster.times import utc_now

MANIFEST = "manifest.json"
CHUNKS = "chunks.json"
VECTORS = "vectors.npy"
GRAPH = "vectors.usearch"
BM25_DIR = "bm25"
POINTER = "current.json"
# Below this many chunks exact search (one matrix product) is as fast as the graph, and exact.
APPROXIMATE_FROM = 20_000
# How deep each index is read for candidates, and reciprocal rank fusion's constant (the
# benchmark's reference fusion).
FUSION_DEPTH = 50
RRF_K = 60
HNSW_CONNECTIVITY = 32
HNSW_EXPANSION_ADD = 200
HNSW_EXPANSION_SEARCH = 256
# The weight of the vectors' standardised score beside BM25's. How much the vectors help
# depends on the text: on modern documents they add what BM25 misses, on Early Modern English
# this encoder never learned they only add noise (bench/README.md has both). So each index
# picks its weight from VECTOR_WEIGHTS on known-item queries of its own chunks, drawn with a
# seed of their own (apart from retrieval_quality's and the benchmark's); an index with fewer
# than MIN_CALIBRATION queries to judge by takes DEFAULT_VECTOR_WEIGHT.
VECTOR_WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
DEFAULT_VECTOR_WEIGHT = 0.3
CALIBRATION_QUERIES = 300
CALIBRATION_SEED = 1009
MIN_CALIBRATION = 30


class IndexUnavailableError(RuntimeError):
    """No index, or one that cannot be loaded: the message says which and why."""


@dataclass(frozen=True)
class IndexManifest:
    version: str
    agent_id: str
    encoder_version: str
    dimensions: int
    chunks: int
    approximate: bool
    created_at: str
    vector_weight: float = DEFAULT_VECTOR_WEIGHT
    # {"queries": n, "recall_at_5": {weight: recall}} of the fit, or None when too few queries.
    calibration: dict | None = None


@dataclass(frozen=True)
class Hit:
    chunk: ChunkRecord
    score: float
    found_by: str  # "bm25", "vector" or "both"
    bm25_rank: int | None
    vector_rank: int | None


def index_version(encoder_version: str, chunks: list[ChunkRecord]) -> str:
    """Equal chunks under an equal encoder: equal version, and no rebuild."""
    digest = hashlib.sha256(encoder_version.encode())
    for chunk in sorted(chunks, key=lambda chunk: chunk.chunk_id):
        digest.update(f"\n{chunk.chunk_id}:{chunk.hash}".encode())
    return digest.hexdigest()[:16]


def _tokenize(texts: list[str], as_ids: bool = True):
    """bm25s' tokens: lowercased words of two letters or more, English stop words left out.
    A query's come as strings, which the index maps to its own vocabulary (unknown ones drop)."""
    import bm25s

    return bm25s.tokenize(texts, stopwords="en", return_ids=as_ids, show_progress=False)


def build_index(
    folder: Path,
    agent_id: str,
    encoder_version: str,
    chunks: list[ChunkRecord],
    vectors: np.ndarray,
    encode: Callable[[list[str]], np.ndarray] | None = None,
) -> IndexManifest:
    """Write the index of `chunks` (and their `vectors`, row for row) into `folder`, whole:
    it is written beside its final name and renamed into place. With `encode` (the encoder
    that made `vectors`), the fusion's vector weight is fitted to the index's own queries."""
    import bm25s

    if len(chunks) != len(vectors) or not chunks:
        raise ValueError(f"agent {agent_id}: {len(chunks)} chunks and {len(vectors)} vectors")
    folder = Path(folder)
    partial = folder.with_name(f".{folder.name}.partial-{os.getpid()}")
    partial.mkdir(parents=True, exist_ok=False)
    approximate = len(chunks) >= APPROXIMATE_FROM
    matrix = np.ascontiguousarray(vectors, np.float32)
    np.save(partial / VECTORS, matrix)
    if approximate:
        graph = _graph(matrix.shape[1])
        # One thread: the same chunks in the same order make the same graph, so an index is
        # rebuilt identically and its recall is a property of the data, not of a thread race.
        graph.add(np.arange(len(matrix), dtype=np.uint64), matrix, threads=1)
        graph.save(str(partial / GRAPH))
    lexical = bm25s.BM25()
    lexical.index(_tokenize([chunk.text for chunk in chunks]), show_progress=False)
    lexical.save(str(partial / BM25_DIR))
    (partial / CHUNKS).write_text(json.dumps([asdict(chunk) for chunk in chunks]))
    manifest = IndexManifest(
        version=folder.name,
        agent_id=agent_id,
        encoder_version=encoder_version,
        dimensions=int(matrix.shape[1]),
        chunks=len(chunks),
        approximate=approximate,
        created_at=utc_now().isoformat(),
    )
    (partial / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2))
    if encode is not None:
        weight, calibration = fit_vector_weight(RetrievalIndex(partial), encode)
        manifest = replace(manifest, vector_weight=weight, calibration=calibration)
        (partial / MANIFEST).write_text(json.dumps(asdict(manifest), indent=2))
    os.replace(partial, folder)
    return manifest


def fit_vector_weight(
    index: "RetrievalIndex", encode: Callable[[list[str]], np.ndarray]
) -> tuple[float, dict | None]:
    """The weight in VECTOR_WEIGHTS under which `index` finds most of CALIBRATION_QUERIES
    known-item queries of its own in the top DEPTH (ties: the better MRR, then the smaller
    weight), with the recall of each weight; DEFAULT_VECTOR_WEIGHT when too few queries."""
    items = known_items(index.chunks, CALIBRATION_QUERIES, CALIBRATION_SEED)
    if len(items) < MIN_CALIBRATION:
        return DEFAULT_VECTOR_WEIGHT, None
    row_of = {chunk.chunk_id: row for row, chunk in enumerate(index.chunks)}
    found = np.zeros(len(VECTOR_WEIGHTS))
    reciprocal = np.zeros(len(VECTOR_WEIGHTS))
    for item, vector in zip(items, encode([item.query for item in items]), strict=True):
        scores = index.fusion_scores(item.query, vector, FUSION_DEPTH)
        if row_of[item.chunk_id] not in scores.rows:
            continue
        target = scores.rows.index(row_of[item.chunk_id])
        for number, weight in enumerate(VECTOR_WEIGHTS):
            rank = scores.order(weight).index(target)
            if rank < DEPTH:
                found[number] += 1
                reciprocal[number] += 1.0 / (rank + 1)
    best = max(range(len(VECTOR_WEIGHTS)), key=lambda n: (found[n], reciprocal[n], -n))
    recalls = {
        str(w): round(float(f) / len(items), 4) for w, f in zip(VECTOR_WEIGHTS, found, strict=True)
    }
    return VECTOR_WEIGHTS[best], {"queries": len(items), "recall_at_5": recalls}


@dataclass(frozen=True)
class FusionScores:
    """Both indexes' scores of the candidates (rows), each standardised over them."""

    rows: list[int]
    bm25: np.ndarray
    cosine: np.ndarray  # raw cosines, the tie-break
    lexical: list[int]  # each index's own ranking of its candidates
    vector: list[int]

    def fused(self, weight: float) -> np.ndarray:
        return _standardised(self.bm25) + weight * _standardised(self.cosine)

    def order(self, weight: float) -> list[int]:
        """Candidate positions, best first: by the fused score; equal ones in BM25's own order,
        then by cosine (so weight 0 ranks exactly as BM25 does, and the vectors order what
        BM25 did not score)."""
        fused = self.fused(weight)
        lexical = {row: rank for rank, row in enumerate(self.lexical)}
        unranked = len(self.lexical)
        return sorted(
            range(len(self.rows)),
            key=lambda i: (
                -fused[i],
                lexical.get(self.rows[i], unranked),
                -self.cosine[i],
                self.rows[i],
            ),
        )


def _graph(dimensions: int):
    # onnxruntime first: loaded after usearch's native library, onnxruntime's crashes the
    # process (a segmentation fault on import, usearch 2.26 with onnxruntime 1.32), and the
    # encoder loads it after an index has been opened (`thunder search`, the server).
    import onnxruntime  # noqa: F401
    from usearch.index import Index

    return Index(
        ndim=dimensions,
        metric="cos",
        dtype="f32",
        connectivity=HNSW_CONNECTIVITY,
        expansion_add=HNSW_EXPANSION_ADD,
        expansion_search=HNSW_EXPANSION_SEARCH,
    )


def point_at(agent_dir: Path, version: str) -> None:
    write_atomically(agent_dir / POINTER, json.dumps({"version": version}).encode())


def pointed_version(agent_dir: Path) -> str | None:
    """The version current.json names, or None when there is no readable pointer."""
    try:
        version = json.loads((agent_dir / POINTER).read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return version if isinstance(version, str) else None


class RetrievalIndex:
    """A loaded index: search by a query's text and vector."""

    def __init__(self, folder: Path):
        import bm25s

        folder = Path(folder)
        try:
            self.manifest = IndexManifest(**json.loads((folder / MANIFEST).read_text()))
            self.chunks = [ChunkRecord(**row) for row in json.loads((folder / CHUNKS).read_text())]
            self.vectors = np.load(folder / VECTORS, mmap_mode="r")
            self.lexical = bm25s.BM25.load(str(folder / BM25_DIR))
            self.graph = None
            if self.manifest.approximate:
                self.graph = _graph(self.manifest.dimensions)
                self.graph.load(str(folder / GRAPH))
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise IndexUnavailableError(f"index {folder.name}: {error}") from error
        counts = {len(self.chunks), self.vectors.shape[0], self.manifest.chunks}
        if self.graph is not None:
            counts.add(len(self.graph))
        if len(counts) != 1 or self.vectors.shape[1] != self.manifest.dimensions:
            raise IndexUnavailableError(
                f"index {folder.name}: its parts disagree (chunks, vectors, graph: {counts}, "
                f"{self.vectors.shape[1]} dimensions against {self.manifest.dimensions})"
            )
        self.folder = folder

    @property
    def version(self) -> str:
        return self.manifest.version

    def vector_ranking(self, query: np.ndarray, depth: int) -> list[int]:
        depth = min(depth, len(self.chunks))
        if self.graph is not None:
            matches = self.graph.search(np.asarray(query, np.float32), depth)
            return [int(key) for key in matches.keys]
        scores = np.asarray(self.vectors @ np.asarray(query, np.float32))
        top = np.argpartition(-scores, depth - 1)[:depth]
        return [int(i) for i in top[np.argsort(-scores[top])]]

    def lexical_ranking(self, query: str, depth: int) -> list[int]:
        depth = min(depth, len(self.chunks))
        tokens = _tokenize([query], as_ids=False)
        if not tokens[0]:
            return []
        documents, scores = self.lexical.retrieve(tokens, k=depth, show_progress=False)
        return [int(d) for d, s in zip(documents[0], scores[0], strict=True) if s > 0]

    def fusion_scores(self, query: str, query_vector: np.ndarray, depth: int) -> FusionScores:
        """Each index's top `depth` chunks are the candidates; every candidate gets both scores
        (its BM25 score and its cosine to the query, found by that index or not)."""
        lexical = self.lexical_ranking(query, depth)
        vector = self.vector_ranking(query_vector, depth)
        rows = sorted(set(lexical) | set(vector))
        tokens = _tokenize([query], as_ids=False)[0]
        bm25 = np.asarray(self.lexical.get_scores(tokens))[rows] if tokens else np.zeros(len(rows))
        cosine = np.asarray(self.vectors[rows] @ np.asarray(query_vector, np.float32))
        return FusionScores(rows, bm25, cosine, lexical, vector)

    def search(self, query: str, query_vector: np.ndarray, k: int) -> list[Hit]:
        """The top `k` chunks by BM25's standardised score plus the vectors', weighted by the
        index's fitted vector_weight (bench/retrieval.py measures it beside each index alone,
        reciprocal rank fusion and the unweighted forms; bench/README.md has the figures)."""
        scores = self.fusion_scores(query, query_vector, max(FUSION_DEPTH, k))
        fused = scores.fused(self.manifest.vector_weight)
        lexical_rank = {row: rank for rank, row in enumerate(scores.lexical)}
        vector_rank = {row: rank for rank, row in enumerate(scores.vector)}
        hits = []
        for i in scores.order(self.manifest.vector_weight)[:k]:
            row = scores.rows[i]
            b, v = lexical_rank.get(row), vector_rank.get(row)
            found_by = (
                "both" if b is not None and v is not None else "bm25" if v is None else "vector"
            )
            hits.append(Hit(self.chunks[row], float(fused[i]), found_by, b, v))
        return hits

    def reciprocal_rank_search(self, query: str, query_vector: np.ndarray, k: int) -> list[int]:
        """Rows by reciprocal rank fusion (k = RRF_K) of the two rankings: the benchmark's
        reference for the fusion `search` uses."""
        depth = max(FUSION_DEPTH, k)
        scores: dict[int, float] = {}
        for ranking in (
            self.lexical_ranking(query, depth),
            self.vector_ranking(query_vector, depth),
        ):
            for rank, row in enumerate(ranking):
                scores[row] = scores.get(row, 0.0) + 1.0 / (RRF_K + 1 + rank)
        return sorted(scores, key=lambda row: (-scores[row], row))[:k]


def _standardised(scores: np.ndarray) -> np.ndarray:
    spread = float(scores.std())
    return (scores - scores.mean()) / spread if spread > 1e-12 else np.zeros_like(scores, float)
