"""TPE trials per hour with one worker and with two, on one study in PostgreSQL.

    .venv/bin/python bench/parallel_search.py [--minutes 3] [--url postgresql+psycopg2://...]

Each worker is a process running `search` on the same study (tinyshakespeare; trials of 2 epochs
of 60 steps at batch 64) until the minutes run out; a trial in flight at the deadline is cut and
counted. The clock starts when every worker has imported TensorFlow and encoded the text, as in
a Celery worker that has run a step before: the rate is the steady one.
Three rows: one worker on one core (TensorFlow held to one thread), one worker with every core,
and two workers on one core each. Target (production issue): two workers at least 1.7x one.
"""

import argparse
import multiprocessing
import os
import tempfile
import time
import uuid
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "text" / "tinyshakespeare.txt"
ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"


def worker(url, study, minutes, threads, folder, ready) -> None:
    if threads is not None:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = str(threads)
    import tensorflow  # noqa: F401  (imported before the clock starts)

    from thunder_dagster.modeling.search import SearchSettings
    from thunder_dagster.modeling.text import encode_documents
    from thunder_dagster.modeling.training import Budget
    from thunder_dagster.modeling.tuning import search

    data = encode_documents([CORPUS.read_text()])
    settings = SearchSettings(
        trials=1000,
        minutes=minutes,
        budget=Budget(epochs=2, steps_per_epoch=60, batch_size=64, validation_windows=64),
    )
    ready.wait()
    search(data, settings, url, study, Path(folder) / "trials")


def trials_per_hour(
    url: str, workers: int, threads: int | None, minutes: float
) -> tuple[int, float]:
    import optuna

    from thunder_dagster.modeling.tuning import counted_trials

    study = f"bench-{workers}-{uuid.uuid4().hex[:6]}"
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(workers + 1)
    with tempfile.TemporaryDirectory() as folder:
        processes = [
            context.Process(target=worker, args=(url, study, minutes, threads, folder, ready))
            for _ in range(workers)
        ]
        for process in processes:
            process.start()
        ready.wait()
        started = time.monotonic()
        for process in processes:
            process.join()
        seconds = time.monotonic() - started
    done = counted_trials(optuna.load_study(study_name=study, storage=url))
    return done, done / seconds * 3600


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=3.0)
    parser.add_argument("--url", default=None, help="a PostgreSQL database for the studies")
    arguments = parser.parse_args()
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    url, admin, name = arguments.url, None, None
    if url is None:
        admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
        name = f"thunder_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        one = trials_per_hour(url, 1, 1, arguments.minutes)
        whole = trials_per_hour(url, 1, None, arguments.minutes)
        two = trials_per_hour(url, 2, 1, arguments.minutes)
    finally:
        if admin is not None:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    cores = os.cpu_count()
    print(f"{'workers':>8} {'threads each':>13} {'trials':>7} {'trials/hour':>12}")
    print(f"{1:8d} {1:13d} {one[0]:7d} {one[1]:12.0f}")
    print(f"{1:8d} {cores:13d} {whole[0]:7d} {whole[1]:12.0f}")
    print(f"{2:8d} {1:13d} {two[0]:7d} {two[1]:12.0f}")
    print(f"ratio 2 workers / 1 worker, a core each: {two[1] / one[1]:.2f}x (target at least 1.7x)")
    print(f"ratio 2 workers / 1 worker with all {cores} cores: {two[1] / whole[1]:.2f}x")


if __name__ == "__main__":
    main()
