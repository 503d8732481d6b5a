"""Text extraction from txt, pdf, docx, Markdown and HTML files (documents/markup.py). Runs
inside an isolated worker process."""

import codecs
import dataclasses
import unicodedata
import zipfile
from dataclasses import dataclass
from pathlib import Path

SUPPORTED_EXTENSIONS = (".txt", ".pdf", ".docx", ".md", ".markdown", ".html", ".htm")
# Bumped whenever extraction changes what it returns, so cached results are not reused.
EXTRACTOR_VERSION = 3
# Scanned pages (no text layer) are read by Tesseract through pymupdf, at this resolution, at
# most this many per file (about a third of a second each on two cores).
OCR_DPI = 300
MAX_OCR_PAGES = 200

_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_TEXT_CONTROLS = frozenset("\t\n\r\f\v")
_MAX_BINARY_RATIO = 0.01
_LATIN_COUSINS = frozenset(
    {
        "cp1250",
        "cp1254",
        "cp1257",
        "iso8859_2",
        "iso8859_4",
        "iso8859_10",
        "iso8859_13",
        "iso8859_15",
        "latin_1",
        "mac_latin2",
        "mac_iceland",
        "mac_roman",
    }
)
_CHAOS_TOLERANCE = 0.2


@dataclass(frozen=True)
class ExtractionLimits:
    """Limits past which a file is rejected instead of parsed."""

    max_file_bytes: int = 50 * 1024 * 1024
    max_docx_uncompressed_bytes: int = 200 * 1024 * 1024
    max_pages: int = 2000


@dataclass(frozen=True)
class Extraction:
    """What one file yielded: status is ok, empty or rejected; reason says why when not ok."""

    status: str
    text: str = ""
    reason: str = ""
    pages: int | None = None
    encoding: str | None = None

    @classmethod
    def rejected(cls, reason: str) -> "Extraction":
        return cls(status="rejected", reason=reason)

    @property
    def deterministic(self) -> bool:
        """Whether the same bytes would always give this result (so it may be cached)."""
        return self.status in ("ok", "empty") or not self.reason.startswith(
            ("too large", "timed out", "parser crashed", "too many pages")
        )


# The Latin typographic ligatures (U+FB00..FB06: ff, fi, fl, ffi, ffl, long st, st), which
# PDFs and some word processors keep as one character: "ﬁrst" and "first" are one word.
_LIGATURES = {chr(code): unicodedata.normalize("NFKC", chr(code)) for code in range(0xFB00, 0xFB07)}
_EXPAND_LIGATURES = str.maketrans(_LIGATURES)


def normal_text(text: str) -> str:
    """One spelling per word whatever the format: Unicode NFC, ligatures spelled out."""
    return unicodedata.normalize("NFC", text.translate(_EXPAND_LIGATURES))


def extract(path: str | Path, limits: ExtractionLimits) -> Extraction:
    """Extract the text of one file, by its extension; never raises for a bad file."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".txt":
        extraction = extract_txt(path.read_bytes())
    elif suffix == ".pdf":
        extraction = extract_pdf(path, limits)
    elif suffix == ".docx":
        extraction = extract_docx(path, limits)
    elif suffix in (".md", ".markdown", ".html", ".htm"):
        from thunder_dagster.documents.markup import extract_html, extract_markdown

        markup = extract_markdown if suffix in (".md", ".markdown") else extract_html
        extraction = markup(path.read_bytes())
    else:
        return Extraction(status="skipped", reason=f"unsupported type {suffix or '(none)'}")
    if extraction.text:
        extraction = dataclasses.replace(extraction, text=normal_text(extraction.text))
    return extraction


def _binary_ratio(text: str) -> float:
    sample = text[:100_000]
    if not sample:
        return 0.0
    bad = sum(
        1
        for char in sample
        if char == "\ufffd" or (unicodedata.category(char) == "Cc" and char not in _TEXT_CONTROLS)
    )
    return bad / len(sample)


def _text_result(text: str, encoding: str) -> Extraction:
    if _binary_ratio(text) > _MAX_BINARY_RATIO:
        return Extraction.rejected("binary file, not text: save it as plain text (UTF-8)")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        return Extraction(status="empty", reason="no text in file", encoding=encoding)
    return Extraction(status="ok", text=text, encoding=encoding)


def extract_txt(data: bytes) -> Extraction:
    """Decode text: a byte-order mark, else strict UTF-8, else a detected legacy encoding."""
    if not data:
        return Extraction(status="empty", reason="empty file")
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            try:
                return _text_result(data[len(bom) :].decode(encoding), encoding)
            except UnicodeDecodeError as error:
                return Extraction.rejected(
                    f"not valid {encoding} despite its byte-order mark: {error}"
                )
    try:
        return _text_result(data.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    if b"\x00" in data[:65536]:
        return Extraction.rejected("binary file, not text: save it as plain text (UTF-8)")
    from charset_normalizer import from_bytes

    matches = from_bytes(data[:1_000_000])
    best = matches.best()
    if best is None:
        return Extraction.rejected("binary file or unknown encoding: save it as UTF-8 text")
    encoding = best.encoding
    # Short Western text often scores as well in a Baltic or Central European code page as in
    # Windows-1252, by far the most common legacy encoding (browsers' default for Latin text):
    # among near-equal Latin candidates, take 1252.
    western = next((match for match in matches if match.encoding == "cp1252"), None)
    if (
        encoding in _LATIN_COUSINS
        and western is not None
        and western.chaos <= best.chaos + _CHAOS_TOLERANCE
    ):
        encoding = "cp1252"
    return _text_result(data.decode(encoding, errors="replace"), encoding)


def extract_pdf(path: Path, limits: ExtractionLimits) -> Extraction:
    import pymupdf

    try:
        document = pymupdf.open(path, filetype="pdf")
    except Exception as error:
        return Extraction.rejected(f"corrupt or not a PDF: {error}")
    with document:
        if document.needs_pass or document.is_encrypted:
            return Extraction.rejected("encrypted: upload a copy without a password")
        pages = document.page_count
        if pages > limits.max_pages:
            return Extraction.rejected(f"too many pages: {pages} (limit {limits.max_pages})")
        if pages == 0:
            return Extraction(status="empty", reason="the PDF has no pages", pages=0)
        # Ligatures as their letters, and a word hyphenated at a line's end joined again.
        flags = (pymupdf.TEXTFLAGS_TEXT & ~pymupdf.TEXT_PRESERVE_LIGATURES) | (
            pymupdf.TEXT_DEHYPHENATE
        )
        texts = [page.get_text(flags=flags) for page in document]
        scanned = [number for number, part in enumerate(texts) if not part.strip()]
        tessdata = _tessdata() if scanned else None
        for number in scanned[:MAX_OCR_PAGES] if tessdata else ():
            texts[number] = _ocr(document[number], flags, tessdata)
    text = "\n".join(part.rstrip() for part in texts).strip()
    if not text:
        reason = (
            "no text layer, and OCR found no text"
            if tessdata
            else (
                "no text layer (scanned?): to read scanned pages, install Debian's "
                "tesseract-ocr (apt-get install tesseract-ocr)"
            )
        )
        return Extraction(status="empty", reason=reason, pages=pages)
    return Extraction(status="ok", text=text, pages=pages)


def _tessdata() -> str | None:
    """Tesseract's language data folder, or None when Tesseract is not installed."""
    import shutil

    import pymupdf

    if shutil.which("tesseract") is None:
        return None
    try:
        return pymupdf.get_tessdata()
    except (RuntimeError, OSError):
        return None


def _ocr(page, flags: int, tessdata: str) -> str:
    """A scanned page's text through Tesseract (English); empty when OCR fails."""
    try:
        textpage = page.get_textpage_ocr(
            flags=flags, language="eng", dpi=OCR_DPI, full=True, tessdata=tessdata
        )
    except (RuntimeError, ValueError):
        return ""
    return page.get_text(textpage=textpage, flags=flags)


_W = "{http://schemas.openxmlformats.org/wordprocessingml/2006/main}"
_P, _TBL, _TR, _TC, _SDT, _SDT_CONTENT = (
    f"{_W}p",
    f"{_W}tbl",
    f"{_W}tr",
    f"{_W}tc",
    f"{_W}sdt",
    f"{_W}sdtContent",
)
_RUN_TEXT = {f"{_W}t": None, f"{_W}tab": "\t", f"{_W}br": "\n", f"{_W}cr": "\n"}


def _paragraph_text(paragraph) -> str:
    parts = []
    for node in paragraph.iter(*_RUN_TEXT):
        fixed = _RUN_TEXT[node.tag]
        parts.append(node.text or "" if fixed is None else fixed)
    return "".join(parts)


def _table_lines(table) -> list[str]:
    lines = []
    for row in table.iterchildren(_TR):
        cells = []
        for cell in row.iterchildren(_TC):
            cells.append(" ".join(line for line in _block_lines(cell) if line))
        lines.append("\t".join(cells))
    return lines


def _block_lines(container) -> list[str]:
    """Paragraphs and tables of a body, cell, header or footer, in document order."""
    lines: list[str] = []
    for child in container.iterchildren(_P, _TBL, _SDT):
        if child.tag == _P:
            lines.append(_paragraph_text(child))
        elif child.tag == _TBL:
            lines.extend(_table_lines(child))
        else:
            for content in child.iterchildren(_SDT_CONTENT):
                lines.extend(_block_lines(content))
    return lines


def _docx_precheck(path: Path, limits: ExtractionLimits) -> Extraction | None:
    try:
        with zipfile.ZipFile(path) as archive:
            # zipfile never inflates a member past its declared size (the CRC check fails first),
            # so the declared sizes bound the memory a parse can take: a zip bomb stops here.
            total = sum(info.file_size for info in archive.infolist())
            if "word/document.xml" not in archive.namelist():
                return Extraction.rejected(
                    "not a Word document: the archive has no word/document.xml"
                )
    except zipfile.BadZipFile:
        return Extraction.rejected("corrupt or not a docx: the file is not a zip archive")
    if total > limits.max_docx_uncompressed_bytes:
        return Extraction.rejected(
            f"too large: decompresses to {total / 1e6:.0f} MB "
            f"(limit {limits.max_docx_uncompressed_bytes / 1e6:.0f} MB); a zip bomb?"
        )
    return None


def extract_docx(path: Path, limits: ExtractionLimits) -> Extraction:
    refused = _docx_precheck(path, limits)
    if refused is not None:
        return refused
    import docx

    try:
        document = docx.Document(str(path))
    except Exception as error:
        return Extraction.rejected(f"corrupt or not a Word document: {error}")
    stories: dict[str, list[str]] = {"header": [], "footer": []}
    seen: set[int] = set()
    for section in document.sections:
        for kind, lines in stories.items():
            for variant in ("first_page_", "", "even_page_"):
                story = getattr(section, f"{variant}{kind}")
                if story.is_linked_to_previous or id(story.part.element) in seen:
                    continue
                seen.add(id(story.part.element))
                lines.extend(_block_lines(story.part.element))
    lines = stories["header"] + _block_lines(document.element.body) + stories["footer"]
    text = "\n".join(line.rstrip() for line in lines).strip()
    if not text:
        return Extraction(status="empty", reason="no text in document")
    return Extraction(status="ok", text=text)
