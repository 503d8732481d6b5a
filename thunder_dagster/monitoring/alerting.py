"""One evaluation of the alert rules: judge, reconcile with the open alerts, notify what fired
and what resolved, record every delivery."""

from dataclasses import dataclass

from thunder_dagster.monitoring.channels import Channel, deliver
from thunder_dagster.monitoring.incidents import Alert, AlertLog, Changes, Delivery
from thunder_dagster.monitoring.rules import Observations, Thresholds, evaluate


@dataclass(frozen=True)
class Tick:
    changes: Changes
    deliveries: list[Delivery]

    def summary(self) -> str:
        parts = [
            f"{len(self.changes.fired)} fired",
            f"{len(self.changes.resolved)} resolved",
            f"{len(self.changes.still_open) + len(self.changes.fired)} open",
        ]
        failed = [d for d in self.deliveries if not d.delivered]
        if failed:
            parts.append(f"{len(failed)} deliveries failed")
        return ", ".join(parts)


def message(alert: Alert, event: str) -> tuple[str, str]:
    state = "FIRING" if event == "fired" else "RESOLVED"
    title = f"[thunder-dagster] {state} {alert.rule} ({alert.subject})"
    when = alert.opened_at if event == "fired" else alert.resolved_at
    body = (
        f"{alert.summary}\n\nrule: {alert.rule}\nsubject: {alert.subject}\n"
        f"severity: {alert.severity}\n{event} at: {when.isoformat() if when else '-'}\n"
        f"opened at: {alert.opened_at.isoformat()}\n\n"
        "`thunder alerts` lists open and recent alerts."
    )
    return title, body


def run_tick(
    alerts: AlertLog,
    seen: Observations,
    bounds: Thresholds,
    channels: list[Channel],
    attempts: int = 3,
    backoff_seconds: float = 1.0,
    deadline_seconds: float = 30.0,
) -> Tick:
    changes = alerts.reconcile(evaluate(seen, bounds), seen.now)
    deliveries: list[Delivery] = []
    events = [(a, "fired") for a in changes.fired] + [(a, "resolved") for a in changes.resolved]
    for alert, event in events if channels else []:
        title, body = message(alert, event)
        for outcome in deliver(channels, title, body, attempts, backoff_seconds, deadline_seconds):
            deliveries.append(
                Delivery(
                    alert.id,
                    event,
                    outcome.channel,
                    outcome.attempts,
                    outcome.delivered,
                    outcome.error,
                    seen.now,
                )
            )
    alerts.record(deliveries)
    return Tick(changes, deliveries)
