"""Seconds from a file landing in an agent's folder to its ingest run starting, real daemon.

    .venv/bin/python bench/sensor_latency.py [--samples 10] [--interval 5]

Starts `dagster-daemon` on a temporary THUNDER_HOME with the repo's dagster.yaml, drops one file
into a new agent's folder at a random moment of the sensor's cycle, and reads the run's start
time from the instance. Target: at most 15 s at p50 with the default 5 s interval.
"""

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=10)
    parser.add_argument("--interval", type=int, default=5, help="sensor interval, seconds")
    arguments = parser.parse_args()
    random.seed(7)
    with tempfile.TemporaryDirectory() as scratch:
        home = Path(scratch) / "thunder"
        dagster_home = home / "dagster"
        dagster_home.mkdir(parents=True)
        shutil.copyfile(ROOT / "dagster.yaml", dagster_home / "dagster.yaml")
        env = {
            **os.environ,
            "THUNDER_HOME": str(home),
            "DAGSTER_HOME": str(dagster_home),
            "THUNDER_SENSOR_INTERVAL": str(arguments.interval),
        }
        daemon = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        latencies = []
        try:
            with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
                time.sleep(15)  # the daemon and its code server start up
                for sample in range(arguments.samples):
                    time.sleep(random.uniform(0, arguments.interval))
                    agent = f"agent{sample:02d}"
                    folder = home / "agents" / agent / "reference"
                    folder.mkdir(parents=True)
                    landed = time.time()
                    (folder / "note.txt").write_text(f"sample {sample}: the oven is hot. " * 30)
                    record = None
                    deadline = time.monotonic() + 120
                    while record is None and time.monotonic() < deadline:
                        records = instance.get_run_records(
                            dg.RunsFilter(tags={"dagster/partition": agent})
                        )
                        if records and records[0].start_time:
                            record = records[0]
                        time.sleep(0.2)
                    if record is None:
                        print(f"  {agent}: no run started within 120 s")
                        continue
                    requested = record.create_timestamp.timestamp() - landed
                    latencies.append(record.start_time - landed)
                    print(
                        f"  {agent}: requested {requested:5.1f} s after landing (sensor), "
                        f"started {record.start_time - landed:5.1f} s after (queue and launch "
                        f"{record.start_time - landed - requested:4.1f} s)"
                    )
        finally:
            os.killpg(daemon.pid, signal.SIGTERM)
            daemon.wait(timeout=30)
    if latencies:
        latencies.sort()
        p50 = statistics.median(latencies)
        print(
            f"landing -> run start over {len(latencies)} samples, interval {arguments.interval} s: "
            f"p50 {p50:.1f} s, max {latencies[-1]:.1f} s "
            f"(target p50 <= 15 s: {p50 / 15:.2f}x of the budget)"
        )


if __name__ == "__main__":
    main()
