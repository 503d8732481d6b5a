import shutil
import time

import dagster as dg
from pydantic import Field

from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.retrieval import SentenceEncoderResource
from thunder_dagster.retrieval.contracts import EmbeddedChunks, ServedIndex, declared_encoder
from thunder_dagster.runtime.metadata import image
from thunder_dagster.runtime.partitions import agents

RETRIEVAL_CHECK = "retrieval_quality"
# Index folders kept besides the one served: a server still loading the one before finds it.
INDEXES_KEPT = 2
PROJECTED_CHUNKS = 2000


class EmbeddingConfig(dg.Config):
    reembed_all: bool = Field(
        default=False,
        description="Embed every chunk again, whatever is stored (a new encoder version does "
        "this by itself: its vectors live apart)",
    )
    batch_size: int = Field(default=32, ge=1, le=1024, description="Chunks per encoder call")


class RetrievalConfig(dg.Config):
    known_items: int = Field(
        default=50, ge=1, description="Known-item queries made from the agent's chunks"
    )
    min_recall: float = Field(
        default=0.6, ge=0, le=1, description="Recall@5 below which retrieval_quality fails"
    )
    seed: int = Field(default=0, description="Seed of the chunks and words the queries take")


def _records(chunks) -> list:
    from thunder_dagster.retrieval.vectors import ChunkRecord

    return [
        ChunkRecord(
            chunk_id=str(row.chunk_id),
            document_id=str(row.document_id),
            category=str(row.category),
            filename=str(row.filename),
            start=int(row.start),
            end=int(row.end),
            text=str(row.text),
        )
        for row in chunks.itertuples(index=False)
    ]


def _io_retried(error: OSError) -> dg.RetryRequested:
    """Three attempts in all on an IO error; any other error fails the step at once."""
    return dg.RetryRequested(max_retries=2, seconds_to_wait=1.0)


@dg.asset(
    group_name="retrieval",
    kinds={"onnx", "numpy"},
    partitions_def=agents,
    code_version=declared_encoder(),
)
def chunk_embeddings(
    context: dg.AssetExecutionContext,
    config: EmbeddingConfig,
    chunks,
    thunder: ThunderHome,
    encoder: SentenceEncoderResource,
) -> dg.Output[EmbeddedChunks]:
    """One unit vector per chunk, from the sentence encoder, embedded in batches per document.

    Chunks already embedded by the same encoder version (same chunk id and text hash) are kept,
    so an upload embeds its own chunks only; a new encoder version embeds everything, into
    retrieval/<agent>/vectors/<encoder version>/. Its data version is the encoder version and
    the chunks': the index downstream is stale when either changes."""
    from thunder_dagster.modeling.plots import chunk_projection
    from thunder_dagster.retrieval.index import index_version
    from thunder_dagster.retrieval.vectors import VectorStore, embed_chunks, gather_vectors

    agent_id = context.partition_key
    home = thunder.home()
    records = _records(chunks)
    try:
        loaded = encoder.encoder()
        store = VectorStore(home.retrieval_dir(agent_id) / "vectors" / loaded.version)
        report = embed_chunks(
            records,
            lambda texts: loaded.encode(texts, config.batch_size),
            store,
            reembed=config.reembed_all,
            log=context.log.info,
        )
    except OSError as error:
        context.log.warning(f"embedding {agent_id}: {error}; trying again")
        raise _io_retried(error) from error
    for problem in report.unreadable:
        context.log.warning(f"vectors set aside and embedded again: {problem}")
    for problem in report.failed:
        context.log.error(f"not embedded, left out of the index: {problem}")
    rate = report.embedded / report.seconds if report.seconds and report.embedded else 0.0
    context.log.info(
        f"{report.embedded} chunks embedded, {report.skipped} kept, by {loaded.name} "
        f"({loaded.version}) in {report.seconds:.1f} s"
    )
    embedded = EmbeddedChunks(
        agent_id=agent_id,
        encoder_name=loaded.name,
        encoder_version=loaded.version,
        dimensions=loaded.dimensions,
        vectors_dir=str(store.folder),
        chunks=len(records),
    )
    metadata = {
        "chunks_embedded": report.embedded,
        "chunks_skipped": report.skipped,
        "documents_embedded": report.documents_embedded,
        "documents_skipped": report.documents_skipped,
        "documents_removed": report.removed_documents,
        "documents_failed": dg.MetadataValue.json(report.failed),
        "dimensions": loaded.dimensions,
        "encoder": loaded.name,
        "encoder_version": loaded.version,
        "seconds": dg.MetadataValue.float(round(report.seconds, 2)),
        "chunks_per_second": dg.MetadataValue.float(round(rate, 1)),
        "vectors_dir": dg.MetadataValue.path(str(store.folder)),
    }
    shown, vectors = gather_vectors(records[:: max(1, len(records) // PROJECTED_CHUNKS)], store)
    if shown:
        plot = chunk_projection(
            vectors,
            [record.category for record in shown],
            title=f"{agent_id}: {len(shown)} chunks on two principal components",
        )
        metadata["projection"] = image(plot, "chunk projection")
    return dg.Output(
        embedded,
        metadata=metadata,
        data_version=dg.DataVersion(index_version(loaded.version, records)),
    )


@dg.asset(
    group_name="retrieval",
    kinds={"bm25s", "usearch"},
    partitions_def=agents,
    check_specs=[dg.AssetCheckSpec(RETRIEVAL_CHECK, asset="retrieval_index")],
)
def retrieval_index(
    context: dg.AssetExecutionContext,
    config: RetrievalConfig,
    chunks,
    chunk_embeddings: EmbeddedChunks,
    thunder: ThunderHome,
    encoder: SentenceEncoderResource,
):
    """BM25 over the chunk texts and the vector index over their embeddings, fused by adding
    their standardised scores, the vectors' weighted by what they add on the agent's own
    known-item queries: what the model server searches and grounds answers in.

    Written whole under retrieval/<agent>/indexes/<version>/ and served once current.json names
    it, which happens when retrieval_quality passes; the same chunks under the same encoder
    are the same version and are not rebuilt."""
    from thunder_dagster.retrieval.index import (
        RetrievalIndex,
        build_index,
        index_version,
        point_at,
        pointed_version,
    )
    from thunder_dagster.retrieval.quality import known_items, measure
    from thunder_dagster.retrieval.vectors import VectorStore, gather_vectors

    agent_id = context.partition_key
    home = thunder.home()
    agent_dir = home.retrieval_dir(agent_id)
    store = VectorStore(chunk_embeddings.vectors_dir)
    records, vectors = gather_vectors(_records(chunks), store)
    if not records:
        (agent_dir / "current.json").unlink(missing_ok=True)
        context.log.warning(f"agent {agent_id} has no embedded chunks: no index is served")
        yield dg.Output(ServedIndex(agent_id, None, None, served=False), metadata={"chunks": 0})
        yield dg.AssetCheckResult(
            check_name=RETRIEVAL_CHECK,
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description="no embedded chunks to search: upload documents (a document the "
            "encoder failed on is listed in chunk_embeddings' documents_failed)",
        )
        return
    version = index_version(chunk_embeddings.encoder_version, records)
    folder = agent_dir / "indexes" / version
    started = time.monotonic()
    loaded = encoder.encoder()
    try:
        built = not folder.is_dir()
        if built:
            build_index(
                folder,
                agent_id,
                chunk_embeddings.encoder_version,
                records,
                vectors,
                encode=loaded.encode,
            )
        index = RetrievalIndex(folder)
    except OSError as error:
        context.log.warning(f"index of {agent_id}: {error}; trying again")
        raise _io_retried(error) from error
    seconds = time.monotonic() - started
    items = known_items(records, config.known_items, config.seed)
    vectors = loaded.encode([item.query for item in items])
    by_query = {item.query: vector for item, vector in zip(items, vectors, strict=True)}
    quality = measure(
        items,
        lambda query, k: [hit.chunk.chunk_id for hit in index.search(query, by_query[query], k)],
    )
    passed = bool(items) and quality.recall >= config.min_recall
    previous = pointed_version(agent_dir)
    if passed and previous != version:
        point_at(agent_dir, version)
        context.log.info(f"serving index {version} of {agent_id} (was {previous or 'none'})")
    elif not passed:
        context.log.warning(
            f"index {version} of {agent_id} is not served: recall@5 {quality.recall:.2f} "
            f"below {config.min_recall}; {previous or 'no index'} stays"
        )
    _prune(agent_dir / "indexes", keep={version, previous or version})
    served = pointed_version(agent_dir) == version
    metadata = _index_metadata(index, built, seconds, served)
    yield dg.Output(ServedIndex(agent_id, version, str(folder), served), metadata=metadata)
    yield _quality_check(quality, bool(items), passed, config.min_recall)


def _index_metadata(index, built: bool, seconds: float, served: bool) -> dict:
    manifest = index.manifest
    return {
        "version": manifest.version,
        "chunks": manifest.chunks,
        "dimensions": manifest.dimensions,
        "vector_search": "approximate (usearch HNSW)" if manifest.approximate else "exact",
        "encoder_version": manifest.encoder_version,
        "vector_weight": dg.MetadataValue.float(manifest.vector_weight),
        "vector_weight_fit": dg.MetadataValue.json(
            manifest.calibration or {"fitted": False, "reason": "too few queries"}
        ),
        "built": built,
        "seconds": dg.MetadataValue.float(round(seconds, 2)),
        "served": served,
        "index_path": dg.MetadataValue.path(str(index.folder)),
    }


def _quality_check(quality, asked: bool, passed: bool, floor: float) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=RETRIEVAL_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR if asked else dg.AssetCheckSeverity.WARN,
        description=(
            f"recall@5 {quality.recall:.3f}, MRR {quality.mrr:.3f} over {quality.queries} "
            f"known-item queries (floor {floor})"
            if asked
            else "no sentence of six words or more to make a known-item query from"
        ),
        metadata={
            "recall_at_5": dg.MetadataValue.float(quality.recall if asked else 0.0),
            "mrr": dg.MetadataValue.float(quality.mrr if asked else 0.0),
            "queries": quality.queries,
            "floor": floor,
            "misses": dg.MetadataValue.json(
                [{"chunk_id": m.chunk_id, "query": m.query} for m in quality.misses[:5]]
            ),
        },
    )


def _prune(indexes_dir, keep: set[str]) -> None:
    """Index folders past the newest INDEXES_KEPT besides `keep` go; strays are left alone."""
    if not indexes_dir.is_dir():
        return
    folders = sorted(
        (
            path
            for path in indexes_dir.iterdir()
            if path.is_dir() and (path / "manifest.json").is_file()
        ),
        key=lambda path: path.stat().st_mtime,
        reverse=True,
    )
    for path in folders[INDEXES_KEPT:]:
        if path.name not in keep:
            shutil.rmtree(path, ignore_errors=True)
