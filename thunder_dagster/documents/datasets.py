"""The training dataset: chunks as an RFC 4180 CSV, versioned by its content."""

import hashlib
import itertools
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

from thunder_dagster.files import write_atomically

COLUMNS = (
    "document_id",
    "category",
    "filename",
    "chunk_index",
    "chunk_id",
    "start",
    "end",
    "text",
)
MANIFEST_NAME = "dataset.json"


@dataclass(frozen=True)
class TrainingDataset:
    """One CSV file of chunks; `version` hashes its content: equal data, equal version."""

    agent_id: str
    path: str
    version: str
    rows: int
    documents: int
    characters: int
    created_at: str
    categories: dict[str, int] = field(default_factory=dict)  # category -> documents in it


def latest_dataset(processed_dir: Path) -> TrainingDataset | None:
    manifest = processed_dir / MANIFEST_NAME
    if not manifest.is_file():
        return None
    dataset = TrainingDataset(**json.loads(manifest.read_text()))
    return dataset if Path(dataset.path).is_file() else None


def _field(value) -> str:
    """One RFC 4180 field: quoted, with quotes doubled, when it holds a comma, quote or newline."""
    text = str(value)
    if '"' in text or "," in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


def csv_lines(rows: Iterable[tuple]) -> Iterator[str]:
    """The dataset's CSV lines (CRLF-terminated), header first.

    csv.writer scans every character of a field to decide on quoting and tops out near 45 MB/s
    on 512-character texts; quoting every text field and doubling its quotes with str.replace
    writes the same RFC 4180 at several times that.
    """
    yield ",".join(COLUMNS) + "\r\n"
    for document_id, category, filename, index, chunk, start, end, text in rows:
        quoted = '"' + text.replace('"', '""') + '"'
        yield (
            f"{_field(document_id)},{_field(category)},{_field(filename)},{index},"
            f"{_field(chunk)},{start},{end},{quoted}\r\n"
        )


def write_training_dataset(
    agent_id: str,
    rows: Iterable[tuple],
    processed_dir: Path,
    now: datetime | None = None,
) -> TrainingDataset:
    """Write rows (in COLUMNS order) to processed/training_data_<UTC timestamp>.csv.

    When the content equals the latest dataset's, no new file is written and that one is returned.
    """
    now = now or datetime.now(UTC)
    processed_dir.mkdir(parents=True, exist_ok=True)
    temporary = processed_dir / f".training_data.csv.tmp-{os.getpid()}"
    digest = hashlib.sha256()
    count = characters = 0
    documents: set[str] = set()
    by_category: dict[str, set[str]] = {}

    def counted(rows: Iterable[tuple]) -> Iterator[tuple]:
        nonlocal count, characters
        for row in rows:
            count += 1
            characters += len(row[7])
            documents.add(row[0])
            by_category.setdefault(row[1], set()).add(row[0])
            yield row

    with open(temporary, "wb") as handle:
        lines = csv_lines(counted(rows))
        while batch := list(itertools.islice(lines, 4096)):
            data = "".join(batch).encode("utf-8")
            digest.update(data)
            handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    version = digest.hexdigest()[:16]
    categories = {category: len(ids) for category, ids in sorted(by_category.items())}
    previous = latest_dataset(processed_dir)
    if previous is not None and previous.version == version:
        temporary.unlink()
        if previous.categories == categories:
            return previous
        # A manifest from before the categories were recorded: the same data, counted now.
        dataset = replace(previous, categories=categories)
        _write_manifest(processed_dir, dataset)
        return dataset
    path = processed_dir / f"training_data_{now.strftime('%Y%m%dT%H%M%S_%fZ')}.csv"
    os.replace(temporary, path)
    dataset = TrainingDataset(
        agent_id=agent_id,
        path=str(path),
        version=version,
        rows=count,
        documents=len(documents),
        characters=characters,
        created_at=now.isoformat(),
        categories=categories,
    )
    _write_manifest(processed_dir, dataset)
    return dataset


def _write_manifest(processed_dir: Path, dataset: TrainingDataset) -> None:
    write_atomically(processed_dir / MANIFEST_NAME, json.dumps(asdict(dataset), indent=2).encode())


@dataclass(frozen=True)
class DatasetCheck:
    name: str
    passed: bool
    description: str
    details: dict


def read_training_dataset(path: str | Path):
    """The CSV as pandas reads it back: every column as text, no value taken for a missing one."""
    import pandas as pd

    return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8")


def check_training_dataset(
    path: str | Path, max_chars: int = 512, text_needed: bool = True
) -> list[DatasetCheck]:
    """Read the written file back and check it: not empty, chunks within size, unique chunk ids.
    An agent whose model learns from labelled examples (`text_needed` False) may have none."""
    frame = read_training_dataset(path)
    lengths = frame["text"].str.len()
    too_long = frame.loc[lengths > max_chars, "chunk_id"].tolist()
    duplicated = sorted(set(frame.loc[frame["chunk_id"].duplicated(), "chunk_id"]))
    return [
        DatasetCheck(
            "not_empty",
            len(frame) > 0 or not text_needed,
            f"{len(frame)} chunks"
            if len(frame)
            else "no chunk, and none needed: the agent's classifier learns from its labelled "
            "examples"
            if not text_needed
            else "no chunk: no upload yielded text; see ingest_report.json for each file's reason",
            {"rows": len(frame)},
        ),
        DatasetCheck(
            "chunks_within_size",
            not too_long,
            f"every text at most {max_chars} characters"
            if not too_long
            else f"{len(too_long)} chunks longer than {max_chars} characters",
            {"longest": int(lengths.max()) if len(frame) else 0, "too_long": too_long[:20]},
        ),
        DatasetCheck(
            "unique_chunk_ids",
            not duplicated,
            "no duplicate chunk_id"
            if not duplicated
            else f"{len(duplicated)} duplicated chunk ids",
            {"duplicated": duplicated[:20]},
        ),
    ]
