"""The index on its own: exact and approximate vector search agree, fusion counts both
rankings, a damaged folder is refused with its reason, a junk pointer names nothing."""

import json
import subprocess
import sys

import numpy as np
import pytest

from thunder_dagster.retrieval import index as index_module
from thunder_dagster.retrieval.index import (
    IndexUnavailableError,
    RetrievalIndex,
    build_index,
    point_at,
    pointed_version,
)
from thunder_dagster.retrieval.vectors import ChunkRecord

WORDS = "oven bread flour yeast crust butter sugar salt water knead proof bake".split()


def corpus(count: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    chunks = [
        ChunkRecord(
            f"doc-{n:05d}",
            "doc",
            "reference",
            "doc.txt",
            n,
            n + 1,
            " ".join(rng.choice(WORDS, size=8)) + f" item{n}",
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
    recalls = []
    for row in range(0, 600, 20):
        query = vectors[row]
        assert exact.vector_ranking(query, 1) == [row] == graph.vector_ranking(query, 1)
        top = set(exact.vector_ranking(query, 10))
        recalls.append(len(top & set(graph.vector_ranking(query, 10))) / 10)
    assert np.mean(recalls) >= 0.99


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
