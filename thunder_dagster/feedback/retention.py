"""How long the query log keeps what users asked, and forgetting a user.

- Retention: each agent keeps its answers `retention_days` (agent.json; 90 by default, the
  seeds set none). The hourly cleanup deletes older ones with their ratings and grades, except
  those a dataset used (`used_for_training`) and those an A/B test still running compares
  (logged since the test began).
- `thunder forget USER_ID` deletes every answer of the user (under an open server's id, or a
  trusted key's `<key id>:USER_ID`) with its ratings and grades, and the audit log records that
  it happened, under a hash of the id rather than the id.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, or_, select
from sqlalchemy.engine import Engine

from thunder_dagster.feedback.schema import AbTestRow, AiGrade, Feedback, QueryLog

DEFAULT_RETENTION_DAYS = 90


@dataclass(frozen=True)
class Forgotten:
    queries: int
    ratings: int
    grades: int


def user_hash(user_id: str) -> str:
    """What the audit log keeps of a forgotten user: enough to match a later request."""
    return hashlib.sha256(user_id.encode()).hexdigest()[:16]


def _escaped(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _of_user(user_id: str):
    """The user's rows: their own id, or a trusted key's `<key id>:<their id>`."""
    return or_(
        QueryLog.user_id == user_id,
        QueryLog.user_id.like(f"%:{_escaped(user_id)}", escape="\\"),
    )


def logged_agents(engine: Engine) -> list[str]:
    """Every agent the query log holds answers of."""
    with engine.connect() as connection:
        return list(connection.execute(select(QueryLog.agent_id).distinct()).scalars())


def purge(engine: Engine, agent_id: str, before: datetime) -> int:
    """Delete the agent's answers logged before `before` that no dataset used and no running
    A/B test compares (their ratings and grades go with them); how many went."""
    with engine.begin() as connection:
        running = connection.execute(
            select(func.min(AbTestRow.created_at)).where(
                AbTestRow.agent_id == agent_id, AbTestRow.status == "running"
            )
        ).scalar()
        cutoff = min(before, running) if running is not None else before
        old = select(QueryLog.id).where(
            QueryLog.agent_id == agent_id,
            QueryLog.created_at < cutoff,
            QueryLog.used_for_training.is_(False),
        )
        connection.execute(delete(Feedback).where(Feedback.query_id.in_(old)))
        connection.execute(delete(AiGrade).where(AiGrade.query_id.in_(old)))
        return connection.execute(delete(QueryLog).where(QueryLog.id.in_(old))).rowcount


def forget(engine: Engine, user_id: str) -> Forgotten:
    """Delete every answer of the user, with its ratings and grades, in one transaction."""
    with engine.begin() as connection:
        theirs = select(QueryLog.id).where(_of_user(user_id))
        ratings = connection.execute(delete(Feedback).where(Feedback.query_id.in_(theirs)))
        grades = connection.execute(delete(AiGrade).where(AiGrade.query_id.in_(theirs)))
        queries = connection.execute(delete(QueryLog).where(_of_user(user_id)))
        return Forgotten(queries.rowcount, ratings.rowcount, grades.rowcount)
