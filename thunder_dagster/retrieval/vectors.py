"""Chunk vectors on disk: one file per document and encoder version, so an upload embeds only
its own chunks and a new encoder version starts from nothing.

    retrieval/<agent>/vectors/<encoder version>/<document id>.npz
        chunk_ids  str [n]    hashes  str [n] (sha256 of the chunk text, 16 hex)
        vectors    float32 [n, dimensions]
"""

import hashlib
import io
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from thunder_dagster.files import write_atomically

SUFFIX = ".npz"


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class ChunkRecord:
    """What the index keeps of a chunk besides its vector."""

    chunk_id: str
    document_id: str
    category: str
    filename: str
    start: int
    end: int
    text: str

    @property
    def hash(self) -> str:
        return text_hash(self.text)


def chunks_of(text: str, filename: str, category: str = "reference") -> list[ChunkRecord]:
    """A text's chunks as ingest cuts them (512 characters, 50 shared), its document id the
    hash of the text: for the benchmarks and tests, which start from text, not from uploads."""
    from thunder_dagster.documents.chunking import chunk_id, chunk_spans

    document_id = text_hash(text)
    return [
        ChunkRecord(
            chunk_id(document_id, number),
            document_id,
            category,
            filename,
            start,
            end,
            text[start:end],
        )
        for number, (start, end) in enumerate(chunk_spans(len(text)))
    ]


@dataclass(frozen=True)
class EmbedReport:
    embedded: int
    skipped: int
    documents_embedded: int
    documents_skipped: int
    removed_documents: int
    seconds: float
    unreadable: list[str] = field(default_factory=list)  # files set aside and embedded again
    failed: list[str] = field(default_factory=list)  # "<file>: <reason>", left out of the index


class VectorStore:
    """The vectors of one agent under one encoder version."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)

    def path(self, document_id: str) -> Path:
        return self.folder / f"{document_id}{SUFFIX}"

    def read(self, document_id: str) -> tuple[list[str], list[str], np.ndarray] | None:
        """The document's chunk ids, hashes and vectors; None when it has no readable file."""
        path = self.path(document_id)
        if not path.is_file():
            return None
        with np.load(path, allow_pickle=False) as data:
            return list(data["chunk_ids"]), list(data["hashes"]), data["vectors"]

    def write(self, document_id: str, ids: list[str], hashes: list[str], vectors: np.ndarray):
        buffer = io.BytesIO()
        np.savez(
            buffer,
            chunk_ids=np.asarray(ids, dtype=str),
            hashes=np.asarray(hashes, dtype=str),
            vectors=np.asarray(vectors, np.float32),
        )
        write_atomically(self.path(document_id), buffer.getvalue())

    def documents(self) -> set[str]:
        if not self.folder.is_dir():
            return set()
        return {path.stem for path in self.folder.glob(f"*{SUFFIX}") if path.is_file()}


def group_by_document(chunks: Iterable[ChunkRecord]) -> dict[str, list[ChunkRecord]]:
    grouped: dict[str, list[ChunkRecord]] = {}
    for chunk in chunks:
        grouped.setdefault(chunk.document_id, []).append(chunk)
    return grouped


def embed_chunks(
    chunks: list[ChunkRecord],
    encode: Callable[[list[str]], np.ndarray],
    store: VectorStore,
    reembed: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> EmbedReport:
    """Embed every chunk the store lacks, one document at a time; keep the rest.

    A chunk is kept when its document's file holds its id with the same text hash. `reembed`
    embeds everything again. Files of documents no longer among `chunks` are removed. A file
    that cannot be read (torn, or left there by hand) is reported and its document embedded
    again, never a reason to stop. A document whose chunks the encoder fails on is reported
    and passed by, as the seed's EmbedJob logs a failure and goes on (an IO error while writing
    is raised: the step's retries are for those).
    """
    started = time.monotonic()
    embedded = skipped = documents_embedded = documents_skipped = 0
    unreadable: list[str] = []
    failed: list[str] = []
    grouped = group_by_document(chunks)
    for number, (document_id, rows) in enumerate(sorted(grouped.items()), start=1):
        known: dict[tuple[str, str], np.ndarray] = {}
        if not reembed:
            try:
                stored = store.read(document_id)
            except (OSError, ValueError, KeyError) as error:
                unreadable.append(f"{store.path(document_id).name}: {error}")
                stored = None
            if stored is not None:
                ids, hashes, vectors = stored
                known = {(i, h): v for i, h, v in zip(ids, hashes, vectors, strict=True)}
        keys = [(row.chunk_id, row.hash) for row in rows]
        missing = [index for index, key in enumerate(keys) if key not in known]
        if not missing and len(known) == len(keys):
            skipped += len(rows)
            documents_skipped += 1
            continue
        try:
            fresh = encode([rows[index].text for index in missing]) if missing else None
        except Exception as error:  # this document's trouble, not the others'
            failed.append(f"{rows[0].filename}: {type(error).__name__}: {error}")
            log(f"document {number}/{len(grouped)} ({rows[0].filename}): not embedded: {error}")
            continue
        vectors = [known.get(key) for key in keys]
        for position, index in enumerate(missing):
            vectors[index] = fresh[position]
        store.write(document_id, [k[0] for k in keys], [k[1] for k in keys], np.stack(vectors))
        embedded += len(missing)
        skipped += len(rows) - len(missing)
        documents_embedded += 1
        log(
            f"document {number}/{len(grouped)} ({rows[0].filename}): {len(missing)} chunks "
            f"embedded, {len(rows) - len(missing)} kept"
        )
    removed = 0
    for stale in store.documents() - set(grouped):
        store.path(stale).unlink(missing_ok=True)
        removed += 1
    return EmbedReport(
        embedded=embedded,
        skipped=skipped,
        documents_embedded=documents_embedded,
        documents_skipped=documents_skipped,
        removed_documents=removed,
        seconds=time.monotonic() - started,
        unreadable=unreadable,
        failed=failed,
    )


def gather_vectors(
    chunks: list[ChunkRecord], store: VectorStore
) -> tuple[list[ChunkRecord], np.ndarray]:
    """The chunks the store has vectors for, in their order, and those vectors row for row."""
    found: dict[tuple[str, str], np.ndarray] = {}
    for document_id in group_by_document(chunks):
        try:
            stored = store.read(document_id)
        except (ValueError, KeyError):  # unreadable: its chunks are left out
            stored = None
        if stored is not None:
            ids, hashes, vectors = stored
            found.update(zip(zip(ids, hashes, strict=True), vectors, strict=True))
    kept = [chunk for chunk in chunks if (chunk.chunk_id, chunk.hash) in found]
    rows = [found[(chunk.chunk_id, chunk.hash)] for chunk in kept]
    return kept, (np.stack(rows).astype(np.float32) if rows else np.zeros((0, 0), np.float32))
