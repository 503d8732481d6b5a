import dagster as dg

from thunder_dagster import assets
from thunder_dagster.jobs.ingest import ingest_job
from thunder_dagster.jobs.training import pipeline_job, prompt_training, rollback_job, training_job
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.resources.tuning import TuningStorage
from thunder_dagster.sensors.failures import failure_recorder
from thunder_dagster.sensors.training import prompt_followup, training_sensor
from thunder_dagster.sensors.uploads import upload_sensor

defs = dg.Definitions(
    assets=dg.load_assets_from_package_module(assets),
    asset_checks=dg.load_asset_checks_from_package_module(assets),
    jobs=[ingest_job, training_job, pipeline_job, rollback_job, prompt_training],
    sensors=[upload_sensor, failure_recorder, training_sensor, prompt_followup],
    resources={"thunder": ThunderHome(), "tracking": MlflowTracking(), "tuning": TuningStorage()},
    # Steps run in the run's own process: parsing is already isolated in worker processes, and
    # a step process per asset would cost an interpreter start-up each on two cores.
    executor=dg.in_process_executor,
)
