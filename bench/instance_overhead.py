"""The per-run cost of the Dagster instance: the production profile's PostgreSQL storage beside
the embedded SQLite one.

    .venv/bin/python bench/instance_overhead.py [--runs 20] [--url postgresql+psycopg2://...]

Each run is a three-step job whose steps do nothing, so what is measured is what the instance
adds: creating the run, writing its events (about 40 per run), reading them back. Both instances
execute in this process, one after the other, on the same job.
"""

import argparse
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import dagster as dg

REPO_ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


@dg.op
def first() -> int:
    return 1


@dg.op
def second(value: int) -> int:
    return value + 1


@dg.op
def third(value: int) -> int:
    return value + 1


@dg.job
def three_steps():
    third(second(first()))


QUIET = {"loggers": {"console": {"config": {"log_level": "ERROR"}}}}


def timed_runs(instance: dg.DagsterInstance, runs: int) -> list[float]:
    three_steps.execute_in_process(instance=instance, run_config=QUIET)  # tables, connections
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        result = three_steps.execute_in_process(instance=instance, run_config=QUIET)
        instance.get_records_for_run(result.run_id)
        seconds.append(time.perf_counter() - start)
        assert result.success
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--url", default=ADMIN_URL, help="PostgreSQL admin URL")
    args = parser.parse_args()

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    admin = create_engine(args.url, isolation_level="AUTOCOMMIT")
    name = f"thunder_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        with tempfile.TemporaryDirectory() as sqlite_home, tempfile.TemporaryDirectory() as pg_home:
            for home, template in ((sqlite_home, "dagster.yaml"), (pg_home, "deploy/dagster.yaml")):
                (Path(home) / "dagster.yaml").write_text((REPO_ROOT / template).read_text())
            os.environ["THUNDER_DAGSTER_PG_URL"] = (
                make_url(args.url).set(database=name).render_as_string(hide_password=False)
            )
            results = {}
            for label, home in (("sqlite", sqlite_home), ("postgres", pg_home)):
                with dg.DagsterInstance.from_config(home) as instance:
                    results[label] = timed_runs(instance, args.runs)
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()

    print(f"{args.runs} runs of a 3-step no-op job, executed in process (ms per run)")
    print(f"{'instance':10} {'median':>8} {'p90':>8}")
    for label, seconds in results.items():
        p90 = statistics.quantiles(seconds, n=10)[-1]
        print(f"{label:10} {statistics.median(seconds) * 1e3:8.1f} {p90 * 1e3:8.1f}")
    ratio = statistics.median(results["postgres"]) / statistics.median(results["sqlite"])
    print(f"postgres / sqlite: {ratio:.2f}x per run")


if __name__ == "__main__":
    main()
