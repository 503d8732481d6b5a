"""What only the Dagster instance knows and an operator watches: finished training runs, the
last cleanup, the last successes per agent; read by alert_sensor and the operations checks.
The `operations` asset is reported, not materialized by a step: alert_sensor records it."""

from datetime import datetime, timedelta

import dagster as dg

from thunder_dagster.tasks.registry import KINDS, training_jobs
from thunder_dagster.times import utc_now

OPERATIONS = dg.AssetKey("operations")
# What the operations asset shows per agent: the assets whose latest materialization counts
# (training: the deployment asset of any task, a generator's or a classifier's).
LAST_SUCCESS = {
    "ingest": ("documents",),
    "training": tuple(
        dict.fromkeys(kind.deployment_asset for kind in KINDS.values() if kind.run_jobs)
    ),
    "analysis": ("training_triggers",),
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
    for job in training_jobs():  # every task's models, the reward model's included
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
    for what, assets in LAST_SUCCESS.items():
        for asset in assets:
            result = instance.fetch_materializations(dg.AssetKey(asset), limit=500)
            for record in result.records:  # newest first
                partition = record.partition_key or ""
                at = datetime.fromtimestamp(record.timestamp, tz=utc_now().tzinfo)
                for agent in set(partition.split("|")) & set(found):
                    latest = found[agent].get(what)
                    if latest is None or at > latest:
                        found[agent][what] = at
    return found


def age(now: datetime, at: datetime | None) -> str:
    if at is None:
        return "never"
    hours = (now - at).total_seconds() / 3600
    return f"{at.strftime('%Y-%m-%d %H:%M')} UTC ({hours:.1f} h ago)"


# The checks on `operations`: each named after the rule it applies, run from the UI or
# reported by alert_sensor with the asset.
CHECKS = {
    "cleanup_recent": "cleanup_overdue",
    "training_runs_healthy": "training_failure_rate",
}


def check_results(instance, bounds, now: datetime) -> list[tuple[str, bool, str, dict]]:
    """(check name, passed, description, metadata) for each of CHECKS, judged now."""
    from thunder_dagster.monitoring import rules

    seen = rules.Observations(
        now=now,
        training_runs=finished_training(
            instance, now - timedelta(hours=bounds.training_window_hours)
        ),
        last_cleanup=last_cleanup(instance),
        in_use_since=in_use_since(instance),
    )
    results = []
    for name, rule in CHECKS.items():
        held = getattr(rules, rule)(seen, bounds)
        if rule == "cleanup_overdue":
            fine = f"last successful cleanup: {age(now, seen.last_cleanup)}"
        else:
            failed = sum(1 for run in seen.training_runs if not run.succeeded)
            fine = (
                f"{failed} of {len(seen.training_runs)} training runs failed in the last "
                f"{bounds.training_window_hours:g} h"
            )
        metadata = {"value": held[0].value if held else None}
        results.append((name, not held, held[0].summary if held else fine, metadata))
    return results


def evaluations(instance, bounds, now: datetime) -> list[dg.AssetCheckEvaluation]:
    return [
        dg.AssetCheckEvaluation(
            asset_key=OPERATIONS,
            check_name=name,
            passed=passed,
            description=description,
            metadata={k: v for k, v in metadata.items() if v is not None},
            severity=dg.AssetCheckSeverity.WARN,
        )
        for name, passed, description, metadata in check_results(instance, bounds, now)
    ]
