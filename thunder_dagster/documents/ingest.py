"""An agent's uploads as documents: one record per file seen, with its text or its reason."""

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from thunder_dagster.documents.chunking import chunk_count, chunk_id, chunk_spans
from thunder_dagster.documents.extraction import (
    EXTRACTOR_VERSION,
    SUPPORTED_EXTENSIONS,
    Extraction,
    ExtractionLimits,
    extract,
)
from thunder_dagster.documents.isolation import WorkerFailure, WorkerLimits, run_isolated
from thunder_dagster.documents.labelled import (
    LabelledExample,
    LabelledFileError,
    RowProblem,
    is_labelled,
    read_labelled,
)
from thunder_dagster.documents.uploads import Upload, scan_agent, sha256_file
from thunder_dagster.files import write_atomically
from thunder_dagster.home import Home
from thunder_dagster.tasks.layouts import format_pair
from thunder_dagster.tasks.registry import DEFAULT_TASK

# labelled: a CSV or JSONL file of labelled examples (documents/labelled.py), read as rows and
# never chunked; its rows train the agent's classifier.
STATUSES = ("ok", "labelled", "empty", "rejected", "skipped")
DEFAULT_LIMITS = ExtractionLimits()
DEFAULT_WORKERS = WorkerLimits()


@dataclass(frozen=True)
class Document:
    """One file seen in an agent's folders: its text when status is ok, its reason otherwise."""

    document_id: str
    rel_path: str
    category: str
    filename: str
    sha256: str
    status: str
    reason: str = ""
    text: str = ""
    pages: int | None = None
    cached: bool = False
    examples: tuple[LabelledExample, ...] = ()  # a labelled file's usable rows
    pairs: int = 0  # a file of prompt and response pairs: how many its text lays out
    row_problems: tuple[RowProblem, ...] = ()  # and the rows left out, by line

    @property
    def chars(self) -> int:
        return len(self.text)

    @property
    def chunks(self) -> int:
        return chunk_count(self.chars) if self.status == "ok" else 0


@dataclass(frozen=True)
class DocumentSet:
    agent_id: str
    documents: tuple[Document, ...]

    @property
    def ok(self) -> list[Document]:
        return [document for document in self.documents if document.status == "ok"]

    @property
    def labelled(self) -> list[Document]:
        return [document for document in self.documents if document.status == "labelled"]

    def counts(self) -> dict[str, int]:
        counts = Counter(document.status for document in self.documents)
        return {status: counts.get(status, 0) for status in STATUSES}


class ExtractionCache:
    """Extraction results keyed by content hash, so an unchanged file is never extracted twice."""

    def __init__(self, folder: Path):
        self.folder = folder

    def _path(self, sha256: str, suffix: str) -> Path:
        return self.folder / sha256[:2] / f"{sha256}{suffix}.v{EXTRACTOR_VERSION}.json"

    def get(self, sha256: str, suffix: str) -> Extraction | None:
        path = self._path(sha256, suffix)
        try:
            return Extraction(**json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, TypeError):
            return None

    def put(self, sha256: str, suffix: str, extraction: Extraction) -> None:
        if extraction.deterministic:
            payload = json.dumps(asdict(extraction), ensure_ascii=False).encode("utf-8")
            write_atomically(self._path(sha256, suffix), payload)


def _unread(upload: Upload, status: str, reason: str, sha256: str = "") -> Document:
    """A file whose text was never extracted: skipped, or rejected before parsing."""
    return Document(
        document_id=sha256[:16],
        rel_path=upload.rel_path,
        category=upload.category,
        filename=upload.filename,
        sha256=sha256,
        status=status,
        reason=reason,
    )


def _from_extraction(upload: Upload, sha256: str, extraction: Extraction, cached: bool) -> Document:
    return Document(
        document_id=sha256[:16],
        rel_path=upload.rel_path,
        category=upload.category,
        filename=upload.filename,
        sha256=sha256,
        status=extraction.status,
        reason=extraction.reason,
        text=extraction.text,
        pages=extraction.pages,
        cached=cached,
    )


def _labelled(upload: Upload, sha256: str, task: str) -> Document:
    """A labelled file read in this process (CSV and JSON parsers, bounded by the size limit):
    its rows, the ones left out by line, or the reason none can be used. Prompt and response
    pairs become the text of an ok document, each pair laid out as the agent's task lays them
    out (tasks.format_pair), so its generator learns them like any document."""
    try:
        read = read_labelled(upload.path)
    except LabelledFileError as error:
        return _unread(upload, "rejected", str(error), sha256)
    except OSError as error:
        return _unread(upload, "rejected", f"unreadable: {error.strerror}", sha256)
    bad = len(read.problems)
    if not read.examples:
        first = f" (line {read.problems[0].line}: {read.problems[0].reason})" if bad else ""
        return replace(
            _unread(upload, "rejected", f"no usable row: {bad} bad row(s){first}", sha256),
            row_problems=tuple(read.problems),
        )
    left_out = f"{bad} row(s) left out" if bad else ""
    if read.kind == "pairs":
        text = "".join(format_pair(task, pair.prompt, pair.response) for pair in read.examples)
        return replace(
            _unread(upload, "ok", left_out, sha256),
            text=text,
            pairs=len(read.examples),
            row_problems=tuple(read.problems),
        )
    return replace(
        _unread(upload, "labelled", left_out, sha256),
        examples=tuple(read.examples),
        row_problems=tuple(read.problems),
    )


def ingest_agent(
    home: Home,
    agent_id: str,
    limits: ExtractionLimits = DEFAULT_LIMITS,
    workers: WorkerLimits = DEFAULT_WORKERS,
    log: Callable[[str], None] = lambda message: None,
    task: str = DEFAULT_TASK,
) -> DocumentSet:
    """Every file under the agent's folders, extracted or taken from the cache, in stable order.
    `task` lays out its prompt and response pairs (tasks.FORMATS)."""
    cache = ExtractionCache(home.extraction_cache_dir)
    results: dict[str, Document] = {}
    to_extract: list[tuple[Upload, str]] = []
    first_with_hash: dict[str, str] = {}
    uploads = scan_agent(home.agent_dir(agent_id))
    for upload in uploads:
        suffix = Path(upload.rel_path).suffix.lower()
        if upload.ignored:
            results[upload.rel_path] = _unread(upload, "skipped", upload.ignored)
        elif suffix not in SUPPORTED_EXTENSIONS and not is_labelled(upload.path):
            results[upload.rel_path] = _unread(
                upload,
                "skipped",
                f"unsupported type {suffix or '(none)'}: upload txt, pdf, docx, md or html, or "
                "labelled examples as csv or jsonl",
            )
        elif upload.size > limits.max_file_bytes:
            results[upload.rel_path] = _unread(
                upload,
                "rejected",
                f"too large: {upload.size / 1e6:.1f} MB "
                f"(limit {limits.max_file_bytes / 1e6:.0f} MB)",
            )
        else:
            try:
                sha256 = sha256_file(upload.path)
            except OSError as error:
                results[upload.rel_path] = _unread(
                    upload, "rejected", f"unreadable: {error.strerror}"
                )
                continue
            if sha256 in first_with_hash:
                results[upload.rel_path] = _unread(
                    upload, "skipped", f"duplicate of {first_with_hash[sha256]}", sha256
                )
                continue
            first_with_hash[sha256] = upload.rel_path
            if is_labelled(upload.path):
                results[upload.rel_path] = _labelled(upload, sha256, task)
                continue
            cached = cache.get(sha256, suffix)
            if cached is not None:
                results[upload.rel_path] = _from_extraction(upload, sha256, cached, cached=True)
            else:
                to_extract.append((upload, sha256))

    by_rel = {upload.rel_path: (upload, sha256) for upload, sha256 in to_extract}
    outcomes = run_isolated(
        extract,
        ((upload.rel_path, (str(upload.path), limits)) for upload, _ in to_extract),
        workers,
        preload=("thunder_dagster.documents.extraction", "pymupdf", "docx"),
    )
    for rel_path, outcome in outcomes:
        upload, sha256 = by_rel[rel_path]
        if isinstance(outcome, WorkerFailure):
            outcome = Extraction.rejected(outcome.reason)
        else:
            cache.put(sha256, Path(rel_path).suffix.lower(), outcome)
        results[rel_path] = _from_extraction(upload, sha256, outcome, cached=False)
        log(f"{rel_path}: {outcome.status}{f' ({outcome.reason})' if outcome.reason else ''}")

    ordered = tuple(results[upload.rel_path] for upload in uploads)
    return DocumentSet(agent_id=agent_id, documents=ordered)


def iter_chunk_rows(documents: DocumentSet) -> Iterator[tuple]:
    """The dataset's rows, in COLUMNS order: one per chunk of every ok document."""
    for document in documents.ok:
        text = document.text
        for index, (start, end) in enumerate(chunk_spans(len(text))):
            yield (
                document.document_id,
                document.category,
                document.filename,
                index,
                chunk_id(document.document_id, index),
                start,
                end,
                text[start:end],
            )


def report_entries(documents: DocumentSet) -> list[dict]:
    return [
        {
            "path": document.rel_path,
            "category": document.category,
            "sha256": document.sha256,
            "status": document.status,
            "reason": document.reason,
            "chars": document.chars,
            "chunks": document.chunks,
            "pages": document.pages,
            **(
                {
                    ("pairs" if document.pairs else "examples"): document.pairs
                    or len(document.examples),
                    "bad_rows": [asdict(problem) for problem in document.row_problems],
                }
                if document.examples or document.pairs or document.row_problems
                else {}
            ),
        }
        for document in documents.documents
    ]


def write_ingest_report(path: Path, documents: DocumentSet) -> dict:
    report = {
        "agent_id": documents.agent_id,
        "generated_at": datetime.now(UTC).isoformat(),
        "summary": documents.counts(),
        "files": report_entries(documents),
    }
    write_atomically(path, json.dumps(report, indent=2, ensure_ascii=False).encode("utf-8"))
    return report


@dataclass(frozen=True)
class ReportedFile:
    """One file of an ingest report, as `write_ingest_report` wrote it."""

    path: str
    status: str
    reason: str | None
    chars: int
    chunks: int
    examples: int  # labelled examples or prompt and response pairs read from it
    bad_rows: tuple[tuple[int, str], ...]  # (line, reason) of each row left out


@dataclass(frozen=True)
class IngestReport:
    agent_id: str
    summary: dict[str, int]  # status -> files
    files: tuple[ReportedFile, ...]


def read_ingest_report(path: Path) -> IngestReport | None:
    """The report `write_ingest_report` wrote at `path`; None when there is none yet."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    files = tuple(
        ReportedFile(
            path=entry["path"],
            status=entry["status"],
            reason=entry.get("reason"),
            chars=entry.get("chars") or 0,
            chunks=entry.get("chunks") or 0,
            examples=entry.get("examples") or entry.get("pairs") or 0,
            bad_rows=tuple((row["line"], row["reason"]) for row in entry.get("bad_rows", [])),
        )
        for entry in report["files"]
    )
    return IngestReport(report["agent_id"], dict(report["summary"]), files)
