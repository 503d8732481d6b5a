"""The alert rules, evaluated every minute: what only the instance knows (runs) is gathered
here, the rest by monitoring/observe.py; monitoring/alerting.py does the judging, the alert
log and the notifications. Each tick's summary is the sensor's skip reason in the UI, and the
`operations` asset shows each agent's last successes and their ages, and the open alerts."""

from datetime import datetime, timedelta

import dagster as dg

from thunder_dagster.resources.alerting import AlertingResource
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore
from thunder_dagster.runtime.metadata import markdown_table
from thunder_dagster.runtime.operations import (
    LAST_SUCCESS,
    OPERATIONS,
    REPORT_EVERY,
    age,
    evaluations,
    finished_training,
    in_use_since,
    last_cleanup,
    last_successes,
)
from thunder_dagster.times import utc_now

RECENT = 20  # alerts the operations asset lists, open or resolved


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the alert rules every minute: an alert fires "
    "once when its condition starts holding and resolves when it stops; each goes to the "
    "THUNDER_ALERT_URLS channels and is kept for `thunder alerts`.",
)
def alert_sensor(
    context: dg.SensorEvaluationContext,
    thunder: ThunderHome,
    queries: QueryLogStore,
    alerting: AlertingResource,
) -> dg.SensorResult:
    from thunder_dagster.monitoring.alerting import run_tick
    from thunder_dagster.monitoring.incidents import AlertLog
    from thunder_dagster.monitoring.observe import latency_p95, observe_files
    from thunder_dagster.monitoring.rules import Observations

    now = utc_now()
    bounds = alerting.bounds()
    channels = alerting.channel_list()
    home = thunder.home()
    instance = context.instance
    files = observe_files(home)
    for problem in files.problems:
        context.log.warning(f"alert rules: {problem}")
    cleanup = last_cleanup(instance)
    with queries.open() as store:
        seen = Observations(
            now=now,
            training_runs=finished_training(
                instance, now - timedelta(hours=bounds.training_window_hours)
            ),
            last_cleanup=cleanup,
            in_use_since=in_use_since(instance),
            embedding_backlog=files.embedding_backlog,
            latency_p95_ms=latency_p95(store, now, bounds.latency_window_minutes),
            versions=files.versions,
            ab_events=files.ab_events,
            free_disk_bytes=files.free_disk_bytes,
            spool_rows=files.spool_rows,
            drift=store.latest_drift(),
        )
        alerts = AlertLog(store.engine)
        tick = run_tick(alerts, seen, bounds, channels, alerting.attempts, alerting.backoff_seconds)
        open_alerts = alerts.alerts(open_only=True)
        recent = [alert for alert in alerts.alerts(limit=RECENT) if not alert.is_open]
    for alert in tick.changes.fired:
        context.log.warning(f"alert fired: {alert.rule} ({alert.subject}): {alert.summary}")
    for alert in tick.changes.resolved:
        context.log.info(f"alert resolved: {alert.rule} ({alert.subject})")
    for delivery in tick.deliveries:
        if not delivery.delivered:
            context.log.warning(
                f"alert {delivery.alert_id} not delivered to {delivery.channel} after "
                f"{delivery.attempts} tries: {delivery.error}"
            )
    reported = context.cursor and datetime.fromisoformat(context.cursor)
    events = []
    if tick.changes.fired or tick.changes.resolved or not reported or now - reported > REPORT_EVERY:
        report = _operations(instance, home.list_agents(), now, cleanup, open_alerts, recent)
        events.append(
            dg.AssetMaterialization(
                asset_key=OPERATIONS, metadata={**report, "channels": len(channels)}
            )
        )
        events += evaluations(instance, bounds, now)
        context.update_cursor(now.isoformat())
    return dg.SensorResult(
        skip_reason=dg.SkipReason(f"alert rules: {tick.summary()}"), asset_events=events
    )


def _operations(instance, agents: list[str], now, cleanup, open_alerts, recent) -> dict:
    """What the operations asset shows: each agent's last successes, the open and the recently
    resolved alerts."""
    successes = last_successes(instance, agents)
    rows = [
        [agent]
        + [age(now, successes[agent].get(what)) for what in LAST_SUCCESS]
        + [age(now, cleanup)]
        for agent in agents
    ]
    return {
        "last_successes": markdown_table(
            ["agent", "ingest", "training", "analysis", "cleanup"], rows
        ),
        "open_alerts": markdown_table(
            ["rule", "subject", "severity", "since", "summary"],
            [
                [a.rule, a.subject, a.severity, age(now, a.opened_at), a.summary]
                for a in open_alerts
            ],
        ),
        "recently_resolved": markdown_table(
            ["rule", "subject", "opened", "resolved", "summary"],
            [
                [a.rule, a.subject, age(now, a.opened_at), age(now, a.resolved_at), a.summary]
                for a in recent
            ],
        ),
        "open_alert_count": len(open_alerts),
        "last_cleanup_age_hours": dg.MetadataValue.float(
            round((now - cleanup).total_seconds() / 3600, 2) if cleanup else -1.0
        ),
    }
