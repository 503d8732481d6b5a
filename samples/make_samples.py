"""Render the sample agent's PDF and DOCX files from the plain-text sources in samples/src/.

Run with `.venv/bin/python samples/make_samples.py`; the outputs are committed, so a fresh
checkout has the sample agent without running this.
"""

import html
from pathlib import Path

import docx
import pymupdf

HERE = Path(__file__).parent
TARGETS = {
    "production_plan": ("work_product", "pdf"),
    "supplier_review": ("work_product", "docx"),
    "customer_emails": ("communication", "pdf"),
    "meeting_notes": ("communication", "docx"),
    "recipe_cards": ("reference", "docx"),
    "equipment_manual": ("reference", "pdf"),
}


def blocks(text: str) -> tuple[str, list[list[str] | str]]:
    """The title line, then paragraphs (str) and tables (lists of rows split on '|')."""
    lines = text.strip().splitlines()
    title, body = lines[0], lines[1:]
    out: list = []
    for line in body:
        if line.startswith("|"):
            row = [cell.strip() for cell in line.strip("|").split("|")]
            if out and isinstance(out[-1], list):
                out[-1].append(row)
            else:
                out.append([row])
        elif line.strip():
            out.append(line.strip())
    return title, out


def write_pdf(text: str, path: Path) -> None:
    title, parts = blocks(text)
    body = [f"<h2>{html.escape(title)}</h2>"]
    for part in parts:
        if isinstance(part, list):
            rows = "".join(
                "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
                for row in part
            )
            body.append(f"<table>{rows}</table>")
        elif len(part) < 40 and not part.endswith("."):
            body.append(f"<h4>{html.escape(part)}</h4>")
        else:
            body.append(f"<p>{html.escape(part)}</p>")
    story = pymupdf.Story(
        html="".join(body), user_css="body {font-family: serif; font-size: 11pt;}"
    )
    writer = pymupdf.DocumentWriter(str(path))
    page = pymupdf.paper_rect("a4")
    more = True
    while more:
        device = writer.begin_page(page)
        more, _ = story.place(pymupdf.Rect(page.x0 + 56, page.y0 + 56, page.x1 - 56, page.y1 - 56))
        story.draw(device)
        writer.end_page()
    writer.close()


def write_docx(text: str, path: Path) -> None:
    title, parts = blocks(text)
    document = docx.Document()
    section = document.sections[0]
    section.header.paragraphs[0].text = "Harbor Lane Bakery"
    section.footer.paragraphs[0].text = "Internal document - not for customers"
    document.add_heading(title, level=1)
    for part in parts:
        if isinstance(part, list):
            table = document.add_table(rows=len(part), cols=len(part[0]))
            for row, cells in zip(table.rows, part, strict=True):
                for cell, value in zip(row.cells, cells, strict=True):
                    cell.text = value
        elif len(part) < 40 and not part.endswith("."):
            document.add_heading(part, level=2)
        else:
            document.add_paragraph(part)
    document.core_properties.author = "Harbor Lane Bakery"
    document.save(str(path))


def main() -> None:
    for name, (category, kind) in TARGETS.items():
        text = (HERE / "src" / f"{name}.txt").read_text(encoding="utf-8")
        target = HERE / "agent" / category / f"{name}.{kind}"
        (write_pdf if kind == "pdf" else write_docx)(text, target)
        print(f"wrote {target.relative_to(HERE)}")  # noqa: T201


if __name__ == "__main__":
    main()
