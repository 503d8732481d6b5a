"""Markdown and HTML to text, keeping what reads as text: headings as their own paragraphs,
list items as lines, each table row as its cells joined by " | ", link texts (not their
addresses), code as it is. Markdown through markdown-it-py (CommonMark, with its tables), HTML
through lxml's parser (scripts, styles and comments dropped). The bytes are decoded as a .txt
is (a byte-order mark, UTF-8, else the detected legacy encoding)."""

import re

from thunder_dagster.documents.extraction import Extraction, extract_txt

BLOCKS = {
    "p", "div", "section", "article", "header", "footer", "main", "aside", "nav", "blockquote",
    "pre", "h1", "h2", "h3", "h4", "h5", "h6", "li", "dt", "dd", "tr", "table", "ul", "ol",
    "dl", "figure", "figcaption", "br", "hr", "body", "caption",
}  # fmt: skip
DROPPED = {"script", "style", "noscript", "template", "head", "svg"}


def extract_markdown(data: bytes) -> Extraction:
    decoded = extract_txt(data)
    if decoded.status != "ok":
        return decoded
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse(decoded.text)
    lines: list[str] = []
    row: list[str] | None = None
    for token in tokens:
        if token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and row is not None:
            lines.append(" | ".join(row))
            row = None
        elif token.type == "inline":
            text = _inline(token)
            if row is not None:
                row.append(text.strip())
            else:
                lines.append(text.strip())
        elif token.type in ("fence", "code_block"):
            lines.append(token.content.rstrip("\n"))
        elif token.type in ("heading_close", "paragraph_close", "table_close", "fence"):
            if not token.hidden:  # a tight list's items are lines, not paragraphs
                lines.append("")
    return _result(lines, decoded)


def _inline(token) -> str:
    """An inline run's text: words, code, an image's alt text; no link addresses, no markup."""
    parts = []
    for child in token.children or []:
        if child.type in ("text", "code_inline", "image"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" " if child.type == "softbreak" else "\n")
    return "".join(parts)


def extract_html(data: bytes) -> Extraction:
    decoded = extract_txt(data)
    if decoded.status != "ok":
        return decoded
    import lxml.html
    from lxml import etree

    try:
        root = lxml.html.document_fromstring(decoded.text)
    except (etree.ParserError, ValueError) as error:
        return Extraction.rejected(f"not HTML lxml can read: {error}")
    lines: list[str] = []
    current: list[str] = []

    def flush() -> None:
        text = re.sub(r"\s+", " ", "".join(current)).strip()
        if text:
            lines.append(text)
        current.clear()

    def walk(element) -> None:
        tag = element.tag if isinstance(element.tag, str) else ""
        if tag in DROPPED or not tag:
            current.append(element.tail or "")  # a comment or a dropped element: its tail stays
            return
        if tag in BLOCKS:
            flush()
        if tag == "tr":
            cells = [
                re.sub(r"\s+", " ", cell.text_content()).strip()
                for cell in element
                if isinstance(cell.tag, str) and cell.tag in ("td", "th")
            ]
            lines.append(" | ".join(cells))
        else:
            current.append(element.text or "")
            for child in element:
                walk(child)
        if tag in BLOCKS:
            flush()
            if tag.startswith("h") or tag in ("p", "table", "pre"):
                lines.append("")
        current.append(element.tail or "")

    walk(root)
    flush()
    return _result(lines, decoded)


def _result(lines: list[str], decoded: Extraction) -> Extraction:
    text = re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    if not text:
        return Extraction(status="empty", reason="no text in file", encoding=decoded.encoding)
    return Extraction(status="ok", text=text + "\n", encoding=decoded.encoding)
