"""TPE trials per hour with one worker and with two, on one study in PostgreSQL.

    .venv/bin/python bench/parallel_search.py [--repeats 3] [--url postgresql+psycopg2://...]

Every arm runs the same fixed list of trial configurations (CONFIGS, enqueued into a fresh
study, pruning off), so both sides train the same models: what differs is only how many
workers share the study. Each worker is a process running `search` on it until the study holds
all of them; only completed trials are counted (the arm fails if one is not). The clock starts
when every worker has imported TensorFlow and encoded the text, as in a Celery worker that has
run a step before, and stops when the last trial completes.

Three arms, alternated, each repeated: one worker on one core (TensorFlow held to one thread),
two workers on one core each, and one worker with every core. The median and the range of
the repeats are printed. On two cores the ratio of two workers to one can be at most 2.0;
a figure above it is a fault of the measurement. Target (production issue): at least 1.7x.
"""

import argparse
import multiprocessing
import os
import statistics
import tempfile
import uuid
from pathlib import Path

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "text" / "tinyshakespeare.txt"
ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
# Small models of each family, so that an arm takes minutes; the same list in every arm.
CONFIGS = [
    {"family": family, "context_length": 64, "hidden_size": width, "layers": layers}
    for family, width, layers in [
        ("gru", 128, 1),
        ("conv", 96, 2),
        ("transformer", 64, 2),
        ("gru", 96, 1),
        ("conv", 64, 3),
        ("transformer", 64, 1),
    ]
]
COMMON = {"learning_rate": 2e-3, "dropout": 0.0, "activation": "gelu"}


def settings_for_bench():
    from thunder_dagster.modeling.search import SearchSettings
    from thunder_dagster.modeling.training import Budget

    return SearchSettings(
        trials=len(CONFIGS),
        budget=Budget(epochs=1, steps_per_epoch=40, batch_size=64, validation_windows=64),
        prune=False,
    )


def worker(url, study, threads, folder, ready, number) -> None:
    if threads is not None:
        os.environ["TF_NUM_INTRAOP_THREADS"] = str(threads)
        os.environ["TF_NUM_INTEROP_THREADS"] = str(threads)
    import tensorflow  # noqa: F401  (imported before the clock starts)

    from thunder_dagster.modeling.text import encode_documents
    from thunder_dagster.modeling.tuning import search

    data = encode_documents([CORPUS.read_text()])
    ready.wait()
    search(data, settings_for_bench(), url, study, Path(folder) / "trials", worker=number)


def one_arm(url: str, workers: int, threads: int | None) -> tuple[int, float]:
    """Completed trials and seconds for `workers` processes to finish CONFIGS together."""
    import optuna

    study_name = f"bench-{workers}-{uuid.uuid4().hex[:6]}"
    study = optuna.create_study(study_name=study_name, storage=url, direction="minimize")
    for config in CONFIGS:
        study.enqueue_trial(config | COMMON)
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(workers + 1)
    from datetime import datetime

    started_at = None
    with tempfile.TemporaryDirectory() as folder:
        processes = [
            context.Process(target=worker, args=(url, study_name, threads, folder, ready, n))
            for n in range(workers)
        ]
        for process in processes:
            process.start()
        ready.wait()
        started_at = datetime.now()  # Optuna stamps trials with naive local times
        for process in processes:
            process.join()
    trials = optuna.load_study(study_name=study_name, storage=url).get_trials(deepcopy=False)
    completed = [t for t in trials if t.state == optuna.trial.TrialState.COMPLETE]
    # Until the last trial completed, not until the processes exited: a step that finished
    # its trials waits for the others' last ones, which is the step's time, not the trials'.
    seconds = (max(t.datetime_complete for t in completed) - started_at).total_seconds()
    sizes = sorted((t.params["family"], t.params["hidden_size"]) for t in completed)
    expected = sorted((c["family"], c["hidden_size"]) for c in CONFIGS)
    if sizes != expected:
        raise RuntimeError(f"the arm ran {sizes}, not the fixed list {expected}")
    return len(completed), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
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
    cores = os.cpu_count()
    arms = {"1 worker, 1 core": (1, 1), "2 workers, 1 core each": (2, 1)}
    arms[f"1 worker, {cores} cores"] = (1, None)
    rates: dict[str, list[float]] = {arm: [] for arm in arms}
    try:
        for repeat in range(arguments.repeats):
            for arm, (workers, threads) in arms.items():
                done, seconds = one_arm(url, workers, threads)
                rates[arm].append(done / seconds * 3600)
                print(f"repeat {repeat + 1} {arm}: {done} trials in {seconds:.1f} s", flush=True)
    finally:
        if admin is not None:
            with admin.connect() as connection:
                connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    print(f"\n{'arm':>24} {'trials/hour median':>19} {'range':>15}")
    for arm, values in rates.items():
        spread = f"{min(values):.0f}-{max(values):.0f}"
        print(f"{arm:>24} {statistics.median(values):>19.0f} {spread:>15}")
    one, two, whole = (statistics.median(values) for values in rates.values())
    ratio = two / one
    single, double = list(rates.values())[:2]
    per_repeat = ", ".join(f"{b / a:.2f}" for a, b in zip(single, double, strict=True))
    print(
        f"2 workers / 1 worker, a core each: {ratio:.2f}x (target at least 1.7x; "
        f"per repeat {per_repeat})"
    )
    print(f"2 workers / 1 worker with all {cores} cores: {two / whole:.2f}x")
    if ratio > cores:
        print(f"WARNING: above {cores}x from {cores} cores: the measurement is at fault")


if __name__ == "__main__":
    main()
