"""How long a fresh process takes to load the code location, beside what it must not load.

    .venv/bin/python bench/import_time.py [--repeats 9]

Every Dagster process (webserver, daemon, each run) imports `thunder_dagster.definitions`, so
its cost is paid many times a day. Prints the median of fresh interpreters for `import dagster`
alone, for the definitions, and for TensorFlow, which the definitions must never pull in.
"""

import argparse
import statistics
import subprocess
import sys

PROBES = {
    "import dagster": "import dagster",
    "import thunder_dagster.definitions": "import thunder_dagster.definitions",
    "import tensorflow (kept out)": "import tensorflow",
}


def seconds(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    arguments = parser.parse_args()
    for statement in PROBES.values():
        seconds(statement)  # warm the file-system cache
    # Rounds alternate the probes, so a slow spell of the machine weighs on all of them alike.
    samples: dict[str, list[float]] = {label: [] for label in PROBES}
    for _ in range(arguments.repeats):
        for label, statement in PROBES.items():
            samples[label].append(seconds(statement))
    medians = {label: statistics.median(values) for label, values in samples.items()}
    base = medians["import dagster"]
    print(f"{'probe':40} {'median s':>9} {'x dagster':>10}")
    for label, value in medians.items():
        print(f"{label:40} {value:9.2f} {value / base:10.2f}")


if __name__ == "__main__":
    main()
