"""What the answers' journal costs an answer: `QueryLogWriter.submit` with the journal (the row
fsynced before the response, concurrent answers sharing an fsync) beside the same writer with
the journal's append made a no-op (the row only in memory until the writer's batch, as before
issue 29). The same rows, threads and store on both sides; each arm runs --repeats times,
interleaved, and the figures are the medians over the runs.

    .venv/bin/python bench/journal.py [--answers 400] [--threads 1 4] [--repeats 3]

Prints each arm's submit latency (p50, p99, in ms), the fsyncs per answer, and the ratios.
"""

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from thunder_dagster.feedback.records import QueryRecord
from thunder_dagster.serving.querylog import QueryLogWriter


def record(n: int) -> QueryRecord:
    return QueryRecord("acme", f"u{n}", "champion", "1.0.0", f"prompt {n}", "answer", 0.5, False, 3)


def run(journaled: bool, answers: int, threads: int) -> tuple[list[float], float]:
    """Submit latencies (seconds) of `answers` rows from `threads` threads; fsyncs per row."""
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        writer = QueryLogWriter(f"sqlite:///{root / 'queries.db'}", root / "spool")
        writer.flush()
        if not journaled:
            writer.journal.append = lambda line: None
        latencies: list[float] = []
        lock = threading.Lock()

        def answer(share: range) -> None:
            mine = []
            for n in share:
                began = time.perf_counter()
                writer.submit(record(n))
                mine.append(time.perf_counter() - began)
                time.sleep(0.002)  # answers arrive spaced, as generation spaces them
            with lock:
                latencies.extend(mine)

        workers = [
            threading.Thread(target=answer, args=(range(t, answers, threads),))
            for t in range(threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        writer.flush()
        syncs = writer.journal.syncs / answers
        writer.close()
    return latencies, syncs


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=400)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{'threads':>7} {'arm':>10} {'p50 ms':>8} {'p99 ms':>8} {'fsyncs/answer':>14}")
    for threads in args.threads:
        figures: dict[str, list[tuple[float, float, float]]] = {"memory": [], "journal": []}
        for _ in range(args.repeats):
            for arm in ("memory", "journal"):
                latencies, syncs = run(arm == "journal", args.answers, threads)
                figures[arm].append(
                    (percentile(latencies, 0.5) * 1e3, percentile(latencies, 0.99) * 1e3, syncs)
                )
        medians = {}
        for arm, runs in figures.items():
            p50, p99, syncs = (statistics.median(column) for column in zip(*runs, strict=True))
            spread = max(r[1] for r in runs) - min(r[1] for r in runs)
            medians[arm] = (p50, p99)
            print(
                f"{threads:>7} {arm:>10} {p50:>8.3f} {p99:>8.3f} {syncs:>14.2f}"
                f"   (p99 spread over {len(runs)} runs: {spread:.3f} ms)"
            )
        print(
            f"{threads:>7} {'ratio':>10} {medians['journal'][0] / medians['memory'][0]:>8.1f}x"
            f" {medians['journal'][1] / medians['memory'][1]:>7.1f}x  (journal / memory)"
        )


if __name__ == "__main__":
    main()
