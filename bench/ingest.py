"""Ingestion throughput beside its references, as ratios. Not a test: it prints, it never fails.

    .venv/bin/python bench/ingest.py [--copies 20]

- PDF: the whole ingest path (listing, hashing, isolated parser processes, report) against a bare
  pymupdf loop over the same files with the same page flags, both at one process and both at
  two, and the scaling of each from one to two reported apart; and the seeds' approach, one
  `pdftotext` process per file (poppler-utils). Every row is the best of three runs.
- DOCX: paragraphs per second of our extractor (tables, headers and footers kept) against
  python-docx's paragraph objects and against a bare lxml pass over document.xml.
- Chunking and CSV writing: MB of text per second into the training-data CSV, beside string
  slicing alone and csv.writer alone.
- Upload sensor: one tick over 10,000 unchanged files.
"""

import argparse
import csv
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import docx
import pymupdf
from lxml import etree

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from thunder_dagster.documents.chunking import chunk_spans  # noqa: E402
from thunder_dagster.documents.datasets import write_training_dataset  # noqa: E402
from thunder_dagster.documents.extraction import ExtractionLimits, extract_docx  # noqa: E402
from thunder_dagster.documents.ingest import Document, DocumentSet, ingest_agent, iter_chunk_rows  # noqa: E402
from thunder_dagster.documents.isolation import WorkerLimits  # noqa: E402
from thunder_dagster.documents.watch import UploadMemo, look_at_agent  # noqa: E402
from thunder_dagster.home import Home  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
W_T = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}t"
W_P = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}p"


def best_of(repeats: int, function):
    times = []
    result = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return min(times), result


def row(name: str, seconds: float, amount: float, unit: str, reference: float | None) -> None:
    rate = amount / seconds
    ratio = f"{seconds / reference:6.2f}x the time" if reference else "      reference"
    print(f"  {name:44} {seconds * 1000:9.1f} ms {rate:12,.0f} {unit:10} {ratio}")


def pdf_files(folder: Path, copies: int) -> list[Path]:
    """The corpus PDFs, each copied `copies` times with a distinct trailing comment (new hash)."""
    sources = sorted((CORPUS / "pdf").glob("*.pdf"))
    paths = []
    for copy in range(copies):
        for source in sources:
            target = folder / f"c{copy:03d}_{source.name}"
            target.write_bytes(source.read_bytes() + f"\n%copy {copy}\n".encode())
            paths.append(target)
    return paths


# The flags the ingest path extracts with (ligatures spelled out, line-end hyphens joined), so
# both sides do the same work per page.
FLAGS = (pymupdf.TEXTFLAGS_TEXT & ~pymupdf.TEXT_PRESERVE_LIGATURES) | pymupdf.TEXT_DEHYPHENATE


def bare_pages(path: Path) -> int:
    pages = 0
    try:
        with pymupdf.open(path) as document:
            if document.needs_pass:
                return 0
            for page in document:
                page.get_text(flags=FLAGS)
                pages += 1
    except Exception:
        return 0
    return pages


def bare_pymupdf(paths: list[Path], processes: int) -> int:
    """The bare loop over the files, in one process or spread over a pool of `processes`."""
    if processes == 1:
        return sum(map(bare_pages, paths))
    import multiprocessing

    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        return sum(pool.map(bare_pages, paths, chunksize=4))


def pdftotext_per_file(paths: list[Path]) -> int:
    for path in paths:
        subprocess.run(["pdftotext", "-q", str(path), "-"], capture_output=True, check=False)
    return len(paths)


REPEATS = 3


def bench_pdf(copies: int) -> None:
    """Each side at one process and at two, on the same files with the same page flags; the
    best of REPEATS runs for every row, pdftotext included."""
    with tempfile.TemporaryDirectory() as scratch:
        home = Home.resolve(Path(scratch) / "home")
        folder = home.create_agent("bench") / "reference"
        paths = pdf_files(folder, copies)
        megabytes = sum(path.stat().st_size for path in paths) / 1e6

        def ours(processes: int):
            shutil.rmtree(home.extraction_cache_dir, ignore_errors=True)
            return ingest_agent(home, "bench", workers=WorkerLimits(workers=processes))

        bare, path, result, pages = {}, {}, None, 0
        for processes in (1, 2):
            bare[processes], pages = best_of(REPEATS, lambda n=processes: bare_pymupdf(paths, n))
            path[processes], result = best_of(REPEATS, lambda n=processes: ours(n))
        print(f"PDF: {len(paths)} files, {pages} pages, {megabytes:.1f} MB")
        for processes in (1, 2):
            row(f"bare pymupdf loop ({processes} process)", bare[processes], pages, "pages/s", None)
            row(
                f"thunder ingest path ({processes} parser process)",
                path[processes],
                pages,
                "pages/s",
                bare[processes],
            )
        if shutil.which("pdftotext"):
            seconds, _ = best_of(REPEATS, lambda: pdftotext_per_file(paths))
            row("pdftotext, one process per file (seeds)", seconds, pages, "pages/s", bare[1])
        else:
            print("  pdftotext: not installed (apt-get install poppler-utils)")
        print(
            f"  scaling from 1 to 2 processes: bare loop {bare[1] / bare[2]:.2f}x, ingest path "
            f"{path[1] / path[2]:.2f}x (at most 2x on two cores)"
        )
        print(
            f"  ingest throughput at 2: {megabytes / path[2]:.1f} MB/s; statuses {result.counts()}"
        )
        print(
            f"  target: ingest within 1.5x of the bare loop at the same parallelism -> "
            f"{path[1] / bare[1]:.2f}x at 1, {path[2] / bare[2]:.2f}x at 2"
        )


def make_docx(path: Path, paragraphs: int) -> int:
    document = docx.Document()
    document.sections[0].header.paragraphs[0].text = "Bench header"
    sentence = "The levain is fed at noon and again at eight in the evening, every day. "
    count = 0
    for index in range(paragraphs):
        if index % 200 == 199:
            table = document.add_table(rows=5, cols=4)
            for cells in table.rows:
                for cell in cells.cells:
                    cell.text = f"cell {index}"
                    count += 1
        else:
            document.add_paragraph(sentence * (1 + index % 3))
            count += 1
    document.save(str(path))
    return count


def python_docx_objects(path: Path) -> int:
    document = docx.Document(str(path))
    texts = [paragraph.text for paragraph in document.paragraphs]
    for table in document.tables:
        for table_row in table.rows:
            texts.extend(cell.text for cell in table_row.cells)
    return len(texts)


def raw_lxml(path: Path) -> int:
    with zipfile.ZipFile(path) as archive:
        root = etree.fromstring(archive.read("word/document.xml"))
    return sum(1 for p in root.iter(W_P) if "".join(t.text or "" for t in p.iter(W_T)) is not None)


def bench_docx(paragraphs: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "big.docx"
        count = make_docx(path, paragraphs)
        limits = ExtractionLimits()
        lxml_seconds, _ = best_of(3, lambda: raw_lxml(path))
        objects_seconds, _ = best_of(3, lambda: python_docx_objects(path))
        ours_seconds, result = best_of(3, lambda: extract_docx(path, limits))
        print(f"DOCX: {count:,} paragraphs and table cells, {path.stat().st_size / 1e6:.1f} MB")
        row("bare lxml pass over document.xml", lxml_seconds, count, "paras/s", None)
        row(
            "python-docx paragraph and cell objects",
            objects_seconds,
            count,
            "paras/s",
            lxml_seconds,
        )
        row(
            "thunder extract_docx (tables, headers kept)",
            ours_seconds,
            count,
            "paras/s",
            lxml_seconds,
        )
        print(
            f"  target: at least 50,000 paragraphs/s -> {count / ours_seconds:,.0f}",
            f"({result.status})",
        )


def bench_chunks_csv(megabytes: int) -> None:
    base = (CORPUS / "text" / "tinyshakespeare.txt").read_text(encoding="utf-8")
    repeats = max(1, int(megabytes * 1e6 / len(base)))
    documents = DocumentSet(
        agent_id="bench",
        documents=tuple(
            Document(
                f"{index:016x}", f"d{index}.txt", "reference", f"d{index}.txt", "", "ok", text=base
            )
            for index in range(repeats)
        ),
    )
    size = repeats * len(base) / 1e6

    def slicing():
        return sum(
            len(base[start:end]) for _ in range(repeats) for start, end in chunk_spans(len(base))
        )

    def writer_only():
        rows = list(iter_chunk_rows(documents))
        start = time.perf_counter()
        csv.writer(io.StringIO()).writerows(rows)
        return time.perf_counter() - start

    with tempfile.TemporaryDirectory() as scratch:
        slicing_seconds, _ = best_of(3, slicing)
        writer_seconds = min(writer_only() for _ in range(3))
        ours_seconds, dataset = best_of(
            3,
            lambda: write_training_dataset(
                "bench", iter_chunk_rows(documents), Path(scratch) / str(time.time_ns())
            ),
        )
    print(f"Chunks + CSV: {size:.1f} MB of text, {dataset.rows:,} chunks")
    row("string slicing into chunks", slicing_seconds, size, "MB/s", None)
    row(
        "csv.writer alone (rows prebuilt, in memory)", writer_seconds, size, "MB/s", slicing_seconds
    )
    row("thunder chunks + CSV file (+hash, fsync)", ours_seconds, size, "MB/s", slicing_seconds)
    print(f"  target: at least 40 MB/s -> {size / ours_seconds:.1f} MB/s")


def bench_sensor(files: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        home = Home.resolve(Path(scratch) / "home")
        agent = home.create_agent("bench")
        for index in range(files):
            category = ("work_product", "communication", "reference")[index % 3]
            folder = agent / category / f"batch{index // 1000:02d}"
            folder.mkdir(exist_ok=True)
            (folder / f"file{index:05d}.txt").write_text(f"document number {index}")
        memo = UploadMemo()
        look_at_agent(home, "bench", memo)
        first = time.perf_counter()
        look_at_agent(home, "bench", memo)
        memo.save(home)
        hashing = time.perf_counter() - first

        def unchanged_tick():
            tick_memo = UploadMemo.load(home)
            result = look_at_agent(home, "bench", tick_memo)
            tick_memo.save(home)
            return result

        seconds, result = best_of(5, unchanged_tick)
        print(f"Upload sensor: {files:,} files in one agent")
        row("first settled look (hashes every file)", hashing, files, "files/s", None)
        row("a tick over unchanged files (stat only)", seconds, files, "files/s", hashing)
        print(f"  target: under 1 s -> {seconds:.3f} s ({result.files:,} files settled)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=20, help="copies of the PDF corpus")
    parser.add_argument("--docx-paragraphs", type=int, default=20_000)
    parser.add_argument("--csv-mb", type=int, default=50)
    parser.add_argument("--sensor-files", type=int, default=10_000)
    arguments = parser.parse_args()
    print(
        f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}; "
        f"pymupdf {pymupdf.VersionBind}"
    )
    bench_pdf(arguments.copies)
    bench_docx(arguments.docx_paragraphs)
    bench_chunks_csv(arguments.csv_mb)
    bench_sensor(arguments.sensor_files)


if __name__ == "__main__":
    main()
