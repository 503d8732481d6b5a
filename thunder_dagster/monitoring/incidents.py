"""Alert incidents in the query-log store: a condition that starts holding opens one alert,
the same condition on later ticks only refreshes it, and its end resolves it. Each alert's
notifications are recorded beside it, channel by channel."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import sessionmaker

from thunder_dagster.feedback.schema import AlertDelivery, AlertRow
from thunder_dagster.monitoring.rules import Condition


@dataclass(frozen=True)
class Alert:
    id: int
    rule: str
    subject: str
    severity: str
    summary: str
    value: float | None
    opened_at: datetime
    last_seen_at: datetime
    resolved_at: datetime | None

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


@dataclass(frozen=True)
class Changes:
    fired: list[Alert]
    resolved: list[Alert]
    still_open: list[Alert]


@dataclass(frozen=True)
class Delivery:
    alert_id: int
    event: str
    channel: str
    attempts: int
    delivered: bool
    error: str | None
    at: datetime


def _alert(row: AlertRow) -> Alert:
    return Alert(
        row.id,
        row.rule,
        row.subject,
        row.severity,
        row.summary,
        row.value,
        row.opened_at,
        row.last_seen_at,
        row.resolved_at,
    )


class AlertLog:
    """The alerts table of a query-log store (the store has migrated it)."""

    def __init__(self, engine: Engine):
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    def reconcile(self, conditions: list[Condition], now: datetime) -> Changes:
        """Open an alert for each condition without an open one, refresh those that have one,
        resolve each open alert whose condition no longer holds."""
        holding = {(c.rule, c.subject): c for c in conditions}
        fired, resolved, still_open = [], [], []
        with self.sessions.begin() as session:
            open_rows = session.scalars(select(AlertRow).where(AlertRow.resolved_at.is_(None)))
            seen = set()
            for row in open_rows:
                key = (row.rule, row.subject)
                condition = holding.get(key)
                if condition is None or key in seen:
                    row.resolved_at = now
                    resolved.append(row)
                    continue
                seen.add(key)
                row.last_seen_at, row.summary, row.value = now, condition.summary, condition.value
                still_open.append(row)
            for key, condition in holding.items():
                if key in seen:
                    continue
                row = AlertRow(
                    rule=condition.rule,
                    subject=condition.subject,
                    severity=condition.severity,
                    summary=condition.summary,
                    value=condition.value,
                    opened_at=now,
                    last_seen_at=now,
                )
                session.add(row)
                fired.append(row)
            session.flush()
            return Changes(
                [_alert(r) for r in fired],
                [_alert(r) for r in resolved],
                [_alert(r) for r in still_open],
            )

    def alerts(self, open_only: bool = False, limit: int = 100) -> list[Alert]:
        """Open alerts first, then the most recent resolved ones, newest first."""
        with self.sessions() as session:
            query = select(AlertRow)
            if open_only:
                query = query.where(AlertRow.resolved_at.is_(None))
            rows = session.scalars(query.order_by(AlertRow.opened_at.desc(), AlertRow.id.desc()))
            found = [_alert(row) for row in rows.all()[: max(limit, 0) or None]]
        return sorted(found, key=lambda alert: not alert.is_open)

    def record(self, deliveries: list[Delivery]) -> None:
        with self.sessions.begin() as session:
            session.add_all(
                AlertDelivery(
                    alert_id=d.alert_id,
                    event=d.event,
                    channel=d.channel,
                    attempts=d.attempts,
                    delivered=d.delivered,
                    error=d.error,
                    at=d.at,
                )
                for d in deliveries
            )

    def deliveries(self, alert_id: int) -> list[Delivery]:
        with self.sessions() as session:
            rows = session.scalars(
                select(AlertDelivery)
                .where(AlertDelivery.alert_id == alert_id)
                .order_by(AlertDelivery.id)
            )
            return [
                Delivery(r.alert_id, r.event, r.channel, r.attempts, r.delivered, r.error, r.at)
                for r in rows
            ]
