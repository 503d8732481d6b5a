import json
import re
import unicodedata
import zipfile

import docx
import pytest

from tests.factories import CORPUS, write
from thunder_dagster.documents.extraction import (
    ExtractionLimits,
    extract,
    extract_txt,
)
from thunder_dagster.samples import SAMPLE_AGENT_DIR as SAMPLES

LIMITS = ExtractionLimits()
PDFS = sorted((CORPUS / "pdf").glob("*.pdf"))
DOCXS = sorted((CORPUS / "docx").glob("*.docx"))


@pytest.mark.parametrize("path", PDFS + DOCXS, ids=lambda path: path.name)
def test_every_corpus_file_yields_text_or_a_clear_status(path):
    result = extract(path, LIMITS)
    assert result.status in ("ok", "empty", "rejected")
    if result.status == "ok":
        assert result.text.strip()
    else:
        assert result.reason and not result.text


# The one corpus PDF whose page tree pymupdf cannot read as files.json describes it (its
# metadata is damaged on purpose): extraction calls it empty, with the reason, and goes on.
UNREADABLE_PAGES = {"017-unreadable-meta-data_unreadablemetadata.pdf": "the PDF has no pages"}


def test_corpus_pdfs_match_what_the_corpus_says_of_them(corpus):
    described = {
        entry["path"].replace("/", "_"): entry
        for entry in json.loads((corpus / "pdf" / "files.json").read_text())["data"]
    }
    assert PDFS and {path.name for path in PDFS} <= set(described)
    for path in PDFS:
        entry, result = described[path.name], extract(path, LIMITS)
        if entry["encrypted"]:
            assert (result.status, result.reason) == (
                "rejected",
                "encrypted: upload a copy without a password",
            ), path.name
        elif path.name in UNREADABLE_PAGES:
            assert (result.status, result.reason) == ("empty", UNREADABLE_PAGES[path.name])
        else:
            assert result.status in ("ok", "empty"), (path.name, result.reason)
            assert result.pages == entry["pages"], path.name


def no_text_reason() -> str:
    """What an image-only PDF without words is called: OCR'd when Tesseract is installed."""
    from thunder_dagster.documents.extraction import _tessdata

    if _tessdata():
        return "no text layer, and OCR found no text"
    return (
        "no text layer (scanned?): to read scanned pages, install Debian's "
        "tesseract-ocr (apt-get install tesseract-ocr)"
    )


def test_a_pdf_of_images_only_has_no_text_layer():
    result = extract(CORPUS / "pdf" / "007-imagemagick-images_imagemagick-images.pdf", LIMITS)
    assert (result.status, result.reason) == ("empty", no_text_reason())


def test_a_scanned_page_is_read_by_tesseract(tmp_path):
    """A page of text turned into a picture, as a scanner makes it: no text layer, and OCR
    (pymupdf's Tesseract) reads the sentence back."""
    import os
    import shutil

    import pymupdf

    if shutil.which("tesseract") is None:
        message = "tesseract missing: install Debian's tesseract-ocr (.ci/run does)"
        if os.environ.get("THUNDER_REQUIRE_TESSERACT"):
            pytest.fail(message)
        pytest.skip(message)
    sentence = "The walk-in cooler stays between one and four degrees."
    typed = pymupdf.open()
    page = typed.new_page()
    page.insert_text((72, 100), sentence, fontsize=14)
    scanned = pymupdf.open()
    scanned.new_page(width=page.rect.width, height=page.rect.height).insert_image(
        page.rect, pixmap=page.get_pixmap(dpi=200)
    )
    scanned.save(tmp_path / "scan.pdf")
    assert pymupdf.open(tmp_path / "scan.pdf")[0].get_text() == ""  # no text layer
    result = extract(tmp_path / "scan.pdf", LIMITS)
    assert result.status == "ok" and result.text.strip() == sentence


def test_a_multi_page_pdf_keeps_every_page():
    result = extract(CORPUS / "pdf" / "004-pdflatex-4-pages_pdflatex-4-pages.pdf", LIMITS)
    assert result.status == "ok" and result.pages == 4


def test_a_pdf_past_the_page_limit_is_rejected():
    path = CORPUS / "pdf" / "004-pdflatex-4-pages_pdflatex-4-pages.pdf"
    result = extract(path, ExtractionLimits(max_pages=3))
    assert (result.status, result.reason) == ("rejected", "too many pages: 4 (limit 3)")


def test_a_corrupt_pdf_is_rejected(tmp_path):
    path = write(tmp_path / "broken.pdf", b"%PDF-1.7\n this is not a pdf body at all")
    result = extract(path, LIMITS)
    assert result.status == "rejected"
    assert result.reason.startswith("corrupt or not a PDF")


def test_docx_headers_footers_and_tables_are_found():
    text = extract(CORPUS / "docx" / "hdr-header-footer.docx", LIMITS).text
    assert text.startswith("Header for section-1")
    assert text.rstrip().endswith("Footer for section 1")
    table = extract(CORPUS / "docx" / "tbl-cell-access.docx", LIMITS).text
    assert "1\t2\t3\n4\t5\t6\n7\t8\t9" in table


def test_docx_text_comes_in_document_order(tmp_path):
    document = docx.Document()
    document.sections[0].header.paragraphs[0].text = "the header"
    document.sections[0].footer.paragraphs[0].text = "the footer"
    document.add_paragraph("before the table")
    table = document.add_table(rows=2, cols=2)
    for row, values in zip(table.rows, (("a, b", "c"), ("d", 'e "quoted"')), strict=True):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.add_paragraph("after the table")
    path = tmp_path / "ordered.docx"
    document.save(str(path))
    assert extract(path, LIMITS).text == (
        'the header\nbefore the table\na, b\tc\nd\te "quoted"\nafter the table\nthe footer'
    )


def test_a_docx_that_is_not_a_zip_is_rejected(tmp_path):
    result = extract(write(tmp_path / "fake.docx", "plain text in disguise"), LIMITS)
    assert result.status == "rejected"
    assert "not a zip archive" in result.reason


def test_a_zip_without_a_word_document_is_rejected(tmp_path):
    path = tmp_path / "other.docx"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "hi")
    assert "no word/document.xml" in extract(path, LIMITS).reason


def test_a_docx_zip_bomb_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "bomb.docx"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("[Content_Types].xml", "<Types/>")
        with archive.open("word/document.xml", "w", force_zip64=True) as member:
            block = b"<w:p/>" * (1 << 17)
            for _ in range(40):
                member.write(block)
    assert path.stat().st_size < 200_000
    result = extract(path, ExtractionLimits(max_docx_uncompressed_bytes=10 * 1024 * 1024))
    assert result.status == "rejected"
    assert result.reason.startswith("too large: decompresses to 31 MB")


def test_txt_in_utf8_utf16_and_legacy_encodings():
    text = "Café crème, naïve façade — 10 €\nsecond line"
    assert extract_txt(text.encode("utf-8")).text == text
    assert extract_txt(b"\xef\xbb\xbf" + text.encode("utf-8")).text == text
    utf16 = extract_txt(text.encode("utf-16"))
    assert (utf16.text, utf16.status) == (text, "ok")
    assert extract_txt(b"\xfe\xff" + text.encode("utf-16-be")).text == text
    legacy_text = "Crème brûlée à la française, déjà vu. " * 20
    legacy = extract_txt(legacy_text.encode("cp1252"))
    assert legacy.status == "ok"
    assert "Crème brûlée" in legacy.text


def test_line_endings_are_normalised():
    assert extract_txt(b"one\r\ntwo\rthree\n").text == "one\ntwo\nthree\n"


def test_a_binary_file_named_txt_is_rejected():
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 40
    result = extract_txt(png)
    assert result.status == "rejected"
    assert result.reason.startswith("binary file")


def test_empty_and_blank_text_files_are_empty():
    assert extract_txt(b"").status == "empty"
    assert extract_txt(b"  \n\t\n").status == "empty"


def test_an_unsupported_extension_is_skipped(tmp_path):
    result = extract(write(tmp_path / "sheet.xlsx", b"PK..."), LIMITS)
    assert (result.status, result.reason) == ("skipped", "unsupported type .xlsx")


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Größere Übungen für Ärzte und Bäcker. " * 10, "cp1252"),
        ("Привет, как дела? Это обычный текст. " * 10, "cp1251"),
        ("Zażółć gęślą jaźń, powiedział kucharz. " * 10, "cp1250"),
    ],
)
def test_legacy_encodings_are_detected(text, encoding):
    result = extract_txt(text.encode(encoding))
    assert result.status == "ok"
    assert result.text == text


def test_sample_pdfs_spell_each_word_one_way_without_ligatures():
    limits = ExtractionLimits()
    texts = [extract(path, limits).text for path in sorted(SAMPLES.rglob("*.pdf"))]
    joined = "\n".join(texts)
    assert texts and all(texts)
    assert not [char for char in joined if 0xFB00 <= ord(char) <= 0xFB06]
    words = set(re.findall(r"\w+", joined))
    assert {"first", "fifteen"} <= words  # the sample PDFs set both with an fi ligature
    assert unicodedata.is_normalized("NFC", joined)


def test_every_format_is_normalised_to_one_form(tmp_path):
    decomposed = "cafe\u0301 \ufb01sh \ufb02our"
    path = tmp_path / "menu.txt"
    path.write_text(decomposed, encoding="utf-8")
    assert extract(path, ExtractionLimits()).text == "caf\u00e9 fish flour"
