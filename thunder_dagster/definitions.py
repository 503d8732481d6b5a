import dagster as dg

from thunder_dagster import assets
from thunder_dagster.jobs.feedback import (
    ab_test_job,
    ab_test_schedule,
    adaptation_job,
    adaptation_pipeline_job,
    daily_analysis_job,
    daily_analysis_schedule,
    distillation_job,
    fine_tune_job,
    relabel_job,
    reward_job,
    reward_schedule,
)
from thunder_dagster.jobs.ingest import base_job, ingest_job
from thunder_dagster.jobs.maintenance import cleanup_job, cleanup_schedule
from thunder_dagster.jobs.training import (
    classifier_job,
    classifier_pipeline_job,
    comparison_job,
    pipeline_job,
    promote_job,
    prompt_training_job,
    redeploy_job,
    rollback_job,
    training_job,
    undeploy_job,
)
from thunder_dagster.resources.bundle import build_resources
from thunder_dagster.runtime.executors import job_executor
from thunder_dagster.runtime.operations import operations
from thunder_dagster.sensors.alerts import alert_sensor
from thunder_dagster.sensors.failures import run_failure_sensor
from thunder_dagster.sensors.feedback import retraining_sensor
from thunder_dagster.sensors.training import (
    classifier_sensor,
    prompt_followup_sensor,
    training_sensor,
)
from thunder_dagster.sensors.uploads import upload_sensor

defs = dg.Definitions(
    assets=[*dg.load_assets_from_package_module(assets), operations],
    asset_checks=dg.load_asset_checks_from_package_module(assets),
    jobs=[
        ingest_job,
        base_job,
        training_job,
        pipeline_job,
        classifier_job,
        classifier_pipeline_job,
        rollback_job,
        promote_job,
        undeploy_job,
        redeploy_job,
        comparison_job,
        prompt_training_job,
        daily_analysis_job,
        fine_tune_job,
        distillation_job,
        adaptation_job,
        adaptation_pipeline_job,
        relabel_job,
        ab_test_job,
        reward_job,
        cleanup_job,
    ],
    schedules=[daily_analysis_schedule, ab_test_schedule, reward_schedule, cleanup_schedule],
    sensors=[
        upload_sensor,
        run_failure_sensor,
        training_sensor,
        classifier_sensor,
        prompt_followup_sensor,
        retraining_sensor,
        alert_sensor,
    ],
    resources=build_resources(),
    # THUNDER_EXECUTOR: in the run's own process (the default) or on Celery workers.
    executor=job_executor(),
)


def resolve_job(name: str) -> dg.JobDefinition:
    """A job of `defs` by name: what the CLI's reconstructable jobs point at."""
    return defs.resolve_job_def(name)
