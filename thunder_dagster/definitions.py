import dagster as dg

from thunder_dagster import assets
from thunder_dagster.jobs.ingest import ingest_job
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.sensors.failures import failure_recorder
from thunder_dagster.sensors.uploads import upload_sensor

defs = dg.Definitions(
    assets=dg.load_assets_from_package_module(assets),
    asset_checks=dg.load_asset_checks_from_package_module(assets),
    jobs=[ingest_job],
    sensors=[upload_sensor, failure_recorder],
    resources={"thunder": ThunderHome()},
    # Steps run in the run's own process: parsing is already isolated in worker processes, and
    # a step process per asset would cost an interpreter start-up each on two cores.
    executor=dg.in_process_executor,
)
