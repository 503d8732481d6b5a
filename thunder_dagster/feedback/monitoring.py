"""The query-log store's reads for monitoring: answer latencies, the prompts of a day (for drift),
and the daily drift scores."""

from datetime import datetime

from sqlalchemy import select

from thunder_dagster.feedback.schema import DriftScore, QueryLog
from thunder_dagster.times import as_utc


class MonitoringReads:
    """QueryStore's monitoring methods, on its `sessions`."""

    def latencies_since(self, since: datetime) -> dict[str, list[float]]:
        """Each agent's answer latencies (ms) logged after `since`."""
        found: dict[str, list[float]] = {}
        with self.sessions() as session:
            rows = session.execute(
                select(QueryLog.agent_id, QueryLog.latency_ms).where(
                    QueryLog.created_at > as_utc(since)
                )
            )
            for agent_id, latency in rows:
                found.setdefault(agent_id, []).append(float(latency))
        return found

    def queries_on(self, agent_id: str, start: datetime, end: datetime) -> list[str]:
        """The prompts of the agent's answers logged in [start, end)."""
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(QueryLog.prompt).where(
                        QueryLog.agent_id == agent_id,
                        QueryLog.created_at >= as_utc(start),
                        QueryLog.created_at < as_utc(end),
                    )
                )
            )

    def record_drift(self, score: DriftScore) -> None:
        with self.sessions.begin() as session:
            session.merge(score)

    def drift_history(self, agent_id: str, limit: int = 90) -> list[DriftScore]:
        """The agent's daily drift scores, oldest first (the newest `limit` days)."""
        with self.sessions() as session:
            rows = session.scalars(
                select(DriftScore)
                .where(DriftScore.agent_id == agent_id)
                .order_by(DriftScore.day.desc())
                .limit(limit)
            )
            return sorted(rows, key=lambda row: row.day)

    def latest_drift(self) -> dict[str, tuple[str, float]]:
        """Each agent's newest day with a drift score: (day, p95)."""
        latest: dict[str, tuple[str, float]] = {}
        with self.sessions() as session:
            for row in session.scalars(select(DriftScore).order_by(DriftScore.day)):
                latest[row.agent_id] = (row.day.isoformat(), row.p95)
        return latest
