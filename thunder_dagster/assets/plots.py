import base64

import dagster as dg


def image(png: bytes, title: str) -> dg.MarkdownMetadataValue:
    """A PNG shown inline in the asset's metadata (the UI renders Markdown images)."""
    encoded = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


def markdown_table(header: list[str], rows: list[list]) -> dg.MarkdownMetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))
