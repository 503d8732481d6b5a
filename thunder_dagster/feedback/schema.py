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
    # The label the user says a classifier's answer should have been (None: no label given).
    label: Mapped[str | None] = mapped_column(String(100), nullable=True)


class AiGrade(Base):
    """The teacher's grade of an answer under one rubric (its hash): AI feedback, apart from
    users' feedback."""

    __tablename__ = "ai_grades"

    query_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("query_logs.id", ondelete="CASCADE"), primary_key=True
    )
    rubric: Mapped[str] = mapped_column(String(16), primary_key=True)
    score: Mapped[int] = mapped_column(Integer)
    grader: Mapped[str] = mapped_column(String(64))
    graded_at: Mapped[datetime] = mapped_column(UtcDateTime)


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


class AlertRow(Base):
    """One incident of one alert rule for one subject (an agent, or "all"): opened when the
    rule's condition first holds, resolved when it stops holding. At most one open per rule
    and subject, so a rule that keeps holding fires once."""

    __tablename__ = "alerts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    rule: Mapped[str] = mapped_column(String(64), index=True)
    subject: Mapped[str] = mapped_column(String(128))
    severity: Mapped[str] = mapped_column(String(16))
    summary: Mapped[str] = mapped_column(Text)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)


class AlertDelivery(Base):
    """One notification of one alert event ("fired" or "resolved") to one channel: how many
    attempts it took and whether it got through."""

    __tablename__ = "alert_deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(
        Integer, ForeignKey("alerts.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str] = mapped_column(String(256))
    attempts: Mapped[int] = mapped_column(Integer)
    delivered: Mapped[bool] = mapped_column(Boolean)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)


class DriftScore(Base):
    """One agent's drift on one day: how far that day's queries lie from its training text."""

    __tablename__ = "drift_scores"

    agent_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    queries: Mapped[int] = mapped_column(Integer)
    p95: Mapped[float] = mapped_column(Float)
    loss_p95: Mapped[float | None] = mapped_column(Float, nullable=True)
    distance_p95: Mapped[float | None] = mapped_column(Float, nullable=True)
    model_version: Mapped[str] = mapped_column(String(32))
    computed_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ApiKeyRow(Base):
    """An API key: only its SHA-256 is kept. Scopes say what it may do, agents (None: all) for
    which agents; a key that `trusts_user_ids` may name its end users (a product's backend)."""

    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    secret_sha256: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON)
    agents: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)
    trusts_user_ids: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AuditRow(Base):
    """One admin action: who, what, on what, when, the request it came with, how it ended.
    Rows are only ever added."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    actor: Mapped[str] = mapped_column(String(160))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(256))
    request_id: Mapped[str] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text, nullable=True)


class AbTestRow(Base):
    """An A/B test of one challenger version against the champion: the share of users it
    answers, the sample each variant needs and the confidence of the decision. `running_agent`
    holds the agent while the test runs and is NULL after: unique, so an agent runs at most
    one test at a time, whoever starts the second."""

    __tablename__ = "ab_tests"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(64), index=True)
    running_agent: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
    champion_version: Mapped[str] = mapped_column(String(32))
    challenger_version: Mapped[str] = mapped_column(String(32))
    split: Mapped[float] = mapped_column(Float)
    min_sample: Mapped[int] = mapped_column(Integer)
    confidence: Mapped[float] = mapped_column(Float)
    max_days: Mapped[int] = mapped_column(Integer, server_default="14")
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    created_by: Mapped[str] = mapped_column(String(160))
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    ended_by: Mapped[str | None] = mapped_column(String(160), nullable=True)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
