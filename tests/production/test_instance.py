"""The daily schedule and the feedback sensor on the production profile's PostgreSQL instance,
with the query logs in PostgreSQL too."""

from datetime import datetime

import dagster as dg
import pytest

from tests.factories import log
from tests.services import SERVICES
from thunder_dagster.definitions import defs
from thunder_dagster.feedback.store import QueryStore
from thunder_dagster.jobs.feedback import daily_analysis_schedule
from thunder_dagster.resources.bundle import build_resources
from thunder_dagster.sensors.feedback import retraining_sensor

pytestmark = [pytest.mark.integration, SERVICES]


def test_the_daily_schedule_and_its_sensor_on_the_postgres_instance(profile_env, pg_instance, home):
    store = QueryStore.open(profile_env["THUNDER_QUERY_DB_URL"])
    try:
        log(store, 60, datetime(2026, 3, 3, 9), score=5)
    finally:
        store.close()
    pg_instance.add_dynamic_partitions("agents", ["acme"])

    with dg.build_schedule_context(
        instance=pg_instance, scheduled_execution_time=datetime(2026, 3, 4, 2, 0)
    ) as context:
        (request,) = daily_analysis_schedule(context)
    assert request.run_key == "analysis:acme:2026-03-03"

    # The run the daemon would launch for that request, recorded in PostgreSQL; the resources
    # read THUNDER_HOME and THUNDER_QUERY_DB_URL (the PostgreSQL store) from the environment.
    result = defs.resolve_job_def("daily_analysis_job").execute_in_process(
        instance=pg_instance,
        partition_key=request.partition_key,
        tags={"dagster/run_key": request.run_key},
    )
    assert result.success
    (run,) = pg_instance.get_runs()
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/partition/agent"] == "acme"

    queries = {key: build_resources()[key] for key in ("queries", "thunder")}
    with dg.build_sensor_context(instance=pg_instance, resources=queries) as context:
        tick = retraining_sensor(context)
    (retrain,) = tick.run_requests
    assert retrain.run_key == "fine_tune:acme:2026-03-03"
    assert retrain.job_name == "fine_tune_job"
    # A second tick from the first one's cursor finds no analysis recorded after it.
    with dg.build_sensor_context(
        instance=pg_instance, cursor=tick.cursor, resources=queries
    ) as context:
        again = retraining_sensor(context)
    assert again.run_requests == []  # the cursor is past that analysis: nothing new
