"""The index on its own: exact and approximate vector search agree, fusion counts both
rankings, a damaged folder is refused with its reason, a junk pointer names nothing."""

import json
import subprocess
import sys

import numpy as np
import pytest

from thunder_dagster.files import sha256_of
from thunder_dagster.retrieval import index as index_module
from thunder_dagster.retrieval.index import (
    GRAPH,
    IndexUnavailableError,
    RetrievalIndex,
    build_index,
    point_at,
    pointed_version,
)
from thunder_dagster.retrieval.quality import known_items
from thunder_dagster.retrieval.vectors import ChunkRecord

WORDS = "oven bread flour yeast crust butter sugar salt water knead proof bake".split()


def corpus(count: int, seed: int = 0, named: bool = True):
    """`count` chunks of eight words from WORDS and a word of their own, or, not `named`, of
    eight words from the first four of WORDS alone; with random unit vectors."""
    rng = np.random.default_rng(seed)
    chunks = [
        ChunkRecord(
            f"doc-{n:05d}",
            "doc",
            "reference",
            "doc.txt",
            n,
            n + 1,
            " ".join(rng.choice(WORDS if named else WORDS[:4], size=8))
            + (f" item{n}" if named else ""),
        )
        for n in range(count)
    ]
    vectors = rng.normal(size=(count, 16)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return chunks, vectors


def test_approximate_search_finds_what_exact_search_finds(tmp_path, monkeypatch):
    chunks, vectors = corpus(600)
    build_index(tmp_path / "exact", "a", "enc", chunks, vectors)
    monkeypatch.setattr(index_module, "APPROXIMATE_FROM", 100)
    build_index(tmp_path / "graph", "a", "enc", chunks, vectors)
    exact, graph = RetrievalIndex(tmp_path / "exact"), RetrievalIndex(tmp_path / "graph")
    assert (exact.manifest.approximate, graph.manifest.approximate) == (False, True)
    recalls, found_itself = [], 0
    for row in range(0, 600, 20):
        query = vectors[row]
        assert exact.vector_ranking(query, 1) == [row]
        found_itself += graph.vector_ranking(query, 1) == [row]
        top = set(exact.vector_ranking(query, 10))
        recalls.append(len(top & set(graph.vector_ranking(query, 10))) / 10)
    # The graph is built by one thread, the same every time (its file's hash below): on these
    # vectors each finds itself and recall@10 is 1.0 (with threads it varied build to build,
    # 0.98 at the worst of 100, which is why the floor used to be lower).
    assert found_itself == 30
    assert np.mean(recalls) == 1.0
    again = tmp_path / "again"
    build_index(again, "a", "enc", chunks, vectors)
    assert sha256_of(again / GRAPH) == sha256_of(tmp_path / "graph" / GRAPH)


def test_fusion_ranks_a_chunk_both_indexes_found_first_and_says_who_found_each(tmp_path):
    chunks, vectors = corpus(50)
    build_index(tmp_path / "i", "a", "enc", chunks, vectors)
    index = RetrievalIndex(tmp_path / "i")
    hits = index.search("item7", vectors[7], 5)
    assert hits[0].chunk.chunk_id == "doc-00007" and hits[0].found_by == "both"
    assert (hits[0].bm25_rank, hits[0].vector_rank) == (0, 0)
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)
    # Words the index never saw: the vectors alone answer.
    assert {hit.found_by for hit in index.search("zebra", vectors[3], 3)} == {"vector"}


def test_a_folder_whose_parts_disagree_is_refused_with_the_reason(tmp_path):
    chunks, vectors = corpus(20)
    build_index(tmp_path / "i", "a", "enc", chunks, vectors)
    np.save(tmp_path / "i" / "vectors.npy", vectors[:10])
    with pytest.raises(IndexUnavailableError, match="parts disagree"):
        RetrievalIndex(tmp_path / "i")
    (tmp_path / "i" / "chunks.json").write_text("[{")
    with pytest.raises(IndexUnavailableError, match="index i:"):
        RetrievalIndex(tmp_path / "i")


def test_a_pointer_left_by_hand_names_no_version(tmp_path):
    assert pointed_version(tmp_path) is None
    (tmp_path / "current.json").write_text("not json")
    assert pointed_version(tmp_path) is None
    (tmp_path / "current.json").write_text(json.dumps({"version": 7}))
    assert pointed_version(tmp_path) is None
    point_at(tmp_path, "abc")
    assert pointed_version(tmp_path) == "abc"


def test_an_approximate_index_opened_before_the_encoder_does_not_crash_the_process():
    # usearch's native library loaded before onnxruntime's made the later import segfault.
    script = (
        "from thunder_dagster.retrieval.index import _graph; _graph(4); "
        "import onnxruntime; print('alive')"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert (done.returncode, done.stdout.strip()) == (0, "alive"), done.stderr[-2000:]


def test_the_vector_weight_is_fitted_to_what_the_vectors_add_on_the_index_s_own_queries(
    tmp_path,
):
    """Where BM25 alone often misses (chunks of the same four words), an encoder that places
    each query on its chunk earns the vectors a weight. Where BM25 finds the chunk (each has a
    word of its own), vectors of noise get weight 0, and the index ranks exactly as BM25."""
    chunks, vectors = corpus(200, named=False)
    items = known_items(chunks, index_module.CALIBRATION_QUERIES, index_module.CALIBRATION_SEED)
    row_of = {chunk.chunk_id: row for row, chunk in enumerate(chunks)}
    answer = {item.query: vectors[row_of[item.chunk_id]] for item in items}
    rng = np.random.default_rng(1)

    def knowing(texts):
        return np.stack([answer.get(text, vectors[0]) for text in texts])

    def noise(texts):
        found = rng.normal(size=(len(texts), vectors.shape[1])).astype(np.float32)
        return found / np.linalg.norm(found, axis=1, keepdims=True)

    helped = build_index(tmp_path / "helped", "a", "enc", chunks, vectors, encode=knowing)
    assert helped.vector_weight > 0
    assert helped.calibration["queries"] == len(items)
    recalls = helped.calibration["recall_at_5"]
    assert recalls[str(helped.vector_weight)] > recalls["0.0"]
    chunks, vectors = corpus(200)
    unhelped = build_index(tmp_path / "noise", "a", "enc", chunks, vectors, encode=noise)
    assert unhelped.vector_weight == 0.0
    items = known_items(chunks, 40, seed=3)
    index = RetrievalIndex(tmp_path / "noise")
    for item in items:
        lexical = index.lexical_ranking(item.query, 5)
        fused = [chunks.index(hit.chunk) for hit in index.search(item.query, noise([""])[0], 5)]
        assert fused[: len(lexical)] == lexical


def test_an_index_too_small_to_judge_takes_the_default_weight(tmp_path):
    chunks, vectors = corpus(10)
    manifest = build_index(tmp_path / "i", "a", "enc", chunks, vectors, encode=lambda t: None)
    assert (manifest.vector_weight, manifest.calibration) == (
        index_module.DEFAULT_VECTOR_WEIGHT,
        None,
    )
