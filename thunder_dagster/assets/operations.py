"""The checks on the `operations` asset (alert_sensor reports the asset and these with it):
runnable from the UI at any time, they apply the same rules as the alerts."""

import dagster as dg

from thunder_dagster.resources.alerting import AlertingResource
from thunder_dagster.runtime.operations import OPERATIONS, check_results
from thunder_dagster.times import utc_now


def _result(context: dg.AssetCheckExecutionContext, alerting: AlertingResource, name: str):
    for check, passed, description, metadata in check_results(
        context.instance, alerting.bounds(), utc_now()
    ):
        if check == name:
            return dg.AssetCheckResult(
                passed=passed,
                description=description,
                severity=dg.AssetCheckSeverity.WARN,
                metadata={k: v for k, v in metadata.items() if v is not None},
            )
    raise KeyError(name)


@dg.asset_check(
    asset=OPERATIONS,
    description="A successful cleanup_job within cleanup_overdue_hours (2 h by default).",
)
def cleanup_recent(context: dg.AssetCheckExecutionContext, alerting: AlertingResource):
    return _result(context, alerting, "cleanup_recent")


@dg.asset_check(
    asset=OPERATIONS,
    description="At most training_failure_rate (10% by default) of the training runs that "
    "ended in the last 24 h failed.",
)
def training_runs_healthy(context: dg.AssetCheckExecutionContext, alerting: AlertingResource):
    return _result(context, alerting, "training_runs_healthy")
