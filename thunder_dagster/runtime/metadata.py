"""Asset metadata the UI renders: inline plots, Markdown tables, check results, MLflow links."""

import base64
from collections.abc import Iterable, Iterator

import dagster as dg


def image(png: bytes, title: str) -> dg.MarkdownMetadataValue:
    """A PNG shown inline in the asset's metadata (the UI renders Markdown images)."""
    encoded = base64.b64encode(png).decode("ascii")
    return dg.MetadataValue.md(f"![{title}](data:image/png;base64,{encoded})")


def markdown_table(header: list[str], rows: list[list]) -> dg.MarkdownMetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))


def check_results(checks: Iterable) -> Iterator[dg.AssetCheckResult]:
    """Core check records (name, passed, description, details) as blocking-severity results."""
    for check in checks:
        yield dg.AssetCheckResult(
            check_name=check.name,
            passed=check.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=check.description,
            metadata=check.details,
        )


def links(**urls: str | None) -> dict[str, dg.UrlMetadataValue]:
    """The given MLflow (or other) pages as clickable metadata; the missing ones left out."""
    return {label: dg.MetadataValue.url(url) for label, url in urls.items() if url}


def tracking_state(tracker) -> str:
    return "available" if tracker.available else f"off: {tracker.failure}"
