"""The query-log tables: every answer the server gives, its feedback, and the daily analyses.

Every time is timezone-aware UTC in Python. The columns hold naive UTC (SQLite keeps no time
zone, and the tables predate this type): `UtcDateTime` converts on the way in and marks UTC on
the way out, so no caller ever meets a naive time or the process's local zone.
"""

from datetime import UTC, date, datetime

from sqlalchemy import JSON, Boolean, Date, DateTime, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

from thunder_dagster.times import as_utc


class UtcDateTime(TypeDecorator):
    """A moment: stored as naive UTC, read back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        return None if value is None else as_utc(value).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    pass


class QueryLog(Base):
    __tablename__ = "query_logs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(128))
    variant: Mapped[str] = mapped_column(String(16))
    model_version: Mapped[str] = mapped_column(String(32))
    prompt: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float)
    teacher_confidence: Mapped[float | None] = mapped_column(Float, nullable=True)
    sources: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    fallback: Mapped[bool] = mapped_column(Boolean, default=False)
    latency_ms: Mapped[float] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    used_for_training: Mapped[bool] = mapped_column(Boolean, default=False)
    used_by_run: Mapped[str | None] = mapped_column(String(64), nullable=True)


class Feedback(Base):
    __tablename__ = "feedback"

    query_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("query_logs.id", ondelete="CASCADE"), primary_key=True
    )
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Analysis(Base):
    """One daily analysis of one agent: the window it covered and the decision it reached."""

    __tablename__ = "analyses"

    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime)
    window_end: Mapped[datetime] = mapped_column(UtcDateTime)
    decision: Mapped[str] = mapped_column(Text)
    analysed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class CachedResponse(Base):
    """A greedy (temperature 0) answer kept for repeat prompts until `expires_at`."""

    __tablename__ = "response_cache"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(64), index=True)
    model_version: Mapped[str] = mapped_column(String(32))
    response: Mapped[str] = mapped_column(Text)
    confidence: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
