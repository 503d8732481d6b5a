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
from thunder_dagster.times import utc_now

TRAINING_JOBS = (
    "training_job",
    "pipeline_job",
    "prompt_training_job",
    "fine_tune_job",
    "distillation_job",
)
OPERATIONS = dg.AssetKey("operations")
# What the operations asset shows per agent: the asset whose latest materialization counts.
LAST_SUCCESS = {
    "ingest": "documents",
    "training": "deployment",
    "analysis": "training_triggers",
}
# The operations asset is reported when an alert fires or resolves, and at least this often.
REPORT_EVERY = timedelta(hours=1)

operations = dg.AssetSpec(
    OPERATIONS,
    group_name="monitoring",
    description="What an operator watches: per agent, the last successful ingest, training, "
    "cleanup and analysis with their ages, and the open alerts. Reported by alert_sensor.",
)


def _ended(record) -> datetime | None:
    return datetime.fromtimestamp(record.end_time, tz=utc_now().tzinfo) if record.end_time else None


def finished_training(instance, since: datetime):
    from thunder_dagster.monitoring.rules import Finished

    done = []
    for job in TRAINING_JOBS:
        records = instance.get_run_records(
            filters=dg.RunsFilter(
                job_name=job,
                statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE],
                updated_after=since,
            )
        )
        for record in records:
            ended = _ended(record)
            if ended is not None and ended >= since:
                done.append(
                    Finished(job, record.dagster_run.status == dg.DagsterRunStatus.SUCCESS, ended)
                )
    return done


def last_cleanup(instance) -> datetime | None:
    records = instance.get_run_records(
        filters=dg.RunsFilter(job_name="cleanup_job", statuses=[dg.DagsterRunStatus.SUCCESS]),
        limit=1,
    )
    return _ended(records[0]) if records else None


def in_use_since(instance) -> datetime | None:
    records = instance.get_run_records(limit=1, order_by="create_timestamp", ascending=True)
    return records[0].create_timestamp if records else None


def last_successes(instance, agents: list[str]) -> dict[str, dict[str, datetime]]:
    """Per agent, when each of LAST_SUCCESS's assets was last materialized for it."""
    found: dict[str, dict[str, datetime]] = {agent: {} for agent in agents}
    for what, asset in LAST_SUCCESS.items():
        result = instance.fetch_materializations(dg.AssetKey(asset), limit=500)
        for record in result.records:  # newest first
            partition = record.partition_key or ""
            at = datetime.fromtimestamp(record.timestamp, tz=utc_now().tzinfo)
            for agent in set(partition.split("|")) & set(found):
                found[agent].setdefault(what, at)
    return found


def _age(now: datetime, at: datetime | None) -> str:
    if at is None:
        return "never"
    hours = (now - at).total_seconds() / 3600
    return f"{at.strftime('%Y-%m-%d %H:%M')} UTC ({hours:.1f} h ago)"


@dg.sensor(
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Evaluates the alert rules (seeds 004, 003, 001) every minute: an alert fires "
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
        agents = home.list_agents()
        successes = last_successes(instance, agents)
        rows = [
            [agent]
            + [_age(now, successes[agent].get(what)) for what in LAST_SUCCESS]
            + [_age(now, cleanup)]
            for agent in agents
        ]
        events.append(
            dg.AssetMaterialization(
                asset_key=OPERATIONS,
                metadata={
                    "last_successes": markdown_table(
                        ["agent", "ingest", "training", "analysis", "cleanup"], rows
                    ),
                    "open_alerts": markdown_table(
                        ["rule", "subject", "severity", "since", "summary"],
                        [
                            [a.rule, a.subject, a.severity, _age(now, a.opened_at), a.summary]
                            for a in open_alerts
                        ],
                    ),
                    "open_alert_count": len(open_alerts),
                    "last_cleanup_age_hours": dg.MetadataValue.float(
                        round((now - cleanup).total_seconds() / 3600, 2) if cleanup else -1.0
                    ),
                    "channels": len(channels),
                },
            )
        )
        context.update_cursor(now.isoformat())
    return dg.SensorResult(
        skip_reason=dg.SkipReason(f"alert rules: {tick.summary()}"), asset_events=events
    )
