"""Time is timezone-aware UTC everywhere in thunder-dagster; these two make it so."""

from datetime import UTC, datetime


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    """An aware time in UTC; a naive one is taken to be UTC already, never local time."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
