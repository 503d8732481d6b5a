"""The model server against the bare onnxruntime generation of the same model.

    .venv/bin/python bench/serving.py [--requests 200] [--family gru] [--hidden 256]

On a temporary THUNDER_HOME it deploys an (untrained; latency does not depend on the weights)
model of the default shape, starts `thunder serve`, and prints:
- start-up: seconds from spawning the server to its first /healthz answer, and its resident
  memory, beside a process that only imports TensorFlow;
- latency p50/p99, throughput and failures of POST /generate (64 tokens) at concurrency 1, 8
  and 32 from a loopback load generator, beside the same generation through onnxruntime in a
  process of its own, measured in the same run on one thread and on one thread per core (the
  server's generation pool);
- the cost of generating 64 tokens after 64, 256 and 1024 characters of context, with the step
  graph and with the windowed graph run again for every token.
Targets (the serving issue): at most 2 ms added per request at p50 and concurrency 1; no failed
request at concurrency 32; a flat cost per generated token.
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
VOCAB = tuple("\ufffd\n !',-.:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
PROMPT = "ROMEO: What light through yonder window breaks? It is the east"


def deploy(home, family: str, hidden: int, context: int) -> None:
    from thunder_dagster.deployments.registry import NoRegistry
    from thunder_dagster.deployments.releases import release
    from thunder_dagster.files import sha256_of, write_atomically
    from thunder_dagster.modeling.architectures import build_language_model, compile_model
    from thunder_dagster.modeling.cards import CardMetrics, ModelCard
    from thunder_dagster.modeling.graphs import export_onnx, export_step_onnx

    hp = {
        "family": family,
        "context_length": context,
        "learning_rate": 1e-3,
        "hidden_size": hidden,
        "layers": 1 if family == "gru" else 4,
        "dropout": 0.0,
        "activation": "gelu",
    }
    model = compile_model(build_language_model(hp, len(VOCAB)), 1e-3)
    build = home.models_dir("bench") / "builds" / f"{family}-{context}"
    build.mkdir(parents=True)
    model.save(build / "model.keras")
    write_atomically(build / "model.onnx", export_onnx(model, family).SerializeToString())
    step = export_step_onnx(model, family)
    write_atomically(build / "step.onnx", step.SerializeToString())
    ModelCard(
        agent_id="bench",
        family=family,
        params=hp,
        context_length=context,
        vocab=VOCAB,
        metrics=CardMetrics(validation_loss=float("nan"), unigram_loss=float("nan")),
    ).write(build)
    release(
        home.models_dir("bench"),
        home.deployments_dir("bench"),
        "bench",
        build,
        sha256_of(build / "model.onnx"),
        NoRegistry(),
        step_sha256=sha256_of(build / "step.onnx"),
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(home_root: Path, port: int) -> tuple[subprocess.Popen, float]:
    env = {**os.environ, "THUNDER_HOME": str(home_root)}
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(BIN / "thunder"), "serve", "--port", str(port), "--challenger-share", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while True:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            connection.request("GET", "/healthz")
            body = json.loads(connection.getresponse().read())
            if body["agents"].get("bench", {}).get("champion"):
                return process, time.perf_counter() - started
        except OSError:
            time.sleep(0.01)
        if process.poll() is not None:
            raise RuntimeError("the server exited during start-up")


def tensorflow_process() -> tuple[float, float]:
    code = "import time; t = time.perf_counter(); import tensorflow; print(time.perf_counter() - t)"
    process = subprocess.Popen(
        [sys.executable, "-c", code + "; import sys; sys.stdout.flush(); input()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    seconds = float(process.stdout.readline())
    rss = psutil.Process(process.pid).memory_info().rss / 2**20
    process.stdin.write("\n")
    process.stdin.flush()
    process.wait()
    return seconds, rss


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def load(port: int, requests: int, concurrency: int) -> dict:
    body = json.dumps(
        {"prompt": PROMPT, "max_tokens": 64, "temperature": 0.8, "user_id": "bench"}
    ).encode()
    local = threading.local()
    latencies, failures = [], []

    def one(_):
        if not hasattr(local, "connection"):
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        started = time.perf_counter()
        try:
            local.connection.request(
                "POST", "/v1/agents/bench/generate", body, {"Content-Type": "application/json"}
            )
            response = local.connection.getresponse()
            response.read()
            if response.status != 200:
                failures.append(response.status)
        except OSError as error:
            failures.append(str(error))
            local.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        latencies.append((time.perf_counter() - started) * 1000)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - started
    return {
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "throughput": requests / wall,
        "failed": len(failures),
    }


BARE = """
import json, sys, time
from concurrent.futures import ThreadPoolExecutor
import numpy as np
from pathlib import Path
from thunder_dagster.serving.generation import generate
from thunder_dagster.serving.loading import load_deployed
model = load_deployed(Path(sys.argv[1]))
prompt, requests, threads = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
for _ in range(5):
    generate(model, prompt, 64, 0.8)
latencies, failures = [], []
def one(_):
    started = time.perf_counter()
    try:
        generate(model, prompt, 64, 0.8)
    except Exception as error:
        failures.append(repr(error))
    latencies.append((time.perf_counter() - started) * 1000)
started = time.perf_counter()
with ThreadPoolExecutor(threads) as pool:
    list(pool.map(one, range(requests)))
wall = time.perf_counter() - started
print(json.dumps({"p50": float(np.percentile(latencies, 50)),
                  "p99": float(np.percentile(latencies, 99)),
                  "throughput": requests / wall, "failed": len(failures)}))
"""


def bare(home, requests: int, threads: int = 1) -> dict:
    """The same generation in a fresh process that, like the server, never loaded TensorFlow
    (whose thread pools, in this process, would slow onnxruntime down), on `threads` threads:
    the server generates on one thread per core."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            BARE,
            str(home.deployments_dir("bench")),
            PROMPT,
            str(requests),
            str(threads),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def context_costs(family: str, hidden: int) -> list[tuple]:
    """Milliseconds per generated token after 64, 256 and 1024 characters, step against window."""
    import tempfile as scratch

    from thunder_dagster.home import Home
    from thunder_dagster.modeling.decoding import StepDecoder, WindowDecoder
    from thunder_dagster.serving.loading import load_deployed

    rows = []
    for context in (64, 256, 1024):
        with scratch.TemporaryDirectory() as folder:
            home = Home(Path(folder))
            # A transformer's positions bound what it can attend to, so it gets a model of
            # that context; a GRU's state carries any length.
            deploy(home, family, hidden, context if family == "transformer" else 64)
            model = load_deployed(home.deployments_dir("bench"))
            prompt = list(np.random.default_rng(0).integers(1, len(VOCAB), context))
            bounded = family != "gru"
            timings = {
                "step": per_token(
                    StepDecoder(model.step_session, model.context_length, bounded), prompt
                ),
                "window": per_token(WindowDecoder(model.session, model.context_length), prompt),
            }
            rows.append((context, timings["step"], timings["window"]))
    return rows


def per_token(decoder, prompt: list[int], tokens: int = 64) -> float:
    decoder.start(prompt)
    started = time.perf_counter()
    token = 1
    for _ in range(tokens):
        token = int(decoder.step(token).argmax())
    return (time.perf_counter() - started) * 1000 / tokens


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--family", default="gru", choices=["gru", "transformer"])
    parser.add_argument("--hidden", type=int, default=256)
    arguments = parser.parse_args()
    from thunder_dagster.home import Home

    with tempfile.TemporaryDirectory() as folder:
        home = Home(Path(folder))
        deploy(home, arguments.family, arguments.hidden, 64)
        port = free_port()
        process, startup = start_server(home.root, port)
        try:
            load(port, 20, 1)
            rss = psutil.Process(process.pid).memory_info().rss / 2**20
            tf_seconds, tf_rss = tensorflow_process()
            print(f"{'start-up':32} {'seconds':>8} {'RSS MB':>8}")
            print(f"{'thunder serve (to /healthz)':32} {startup:8.2f} {rss:8.0f}")
            print(f"{'import tensorflow':32} {tf_seconds:8.2f} {tf_rss:8.0f}")
            print(f"{'ratio':32} {startup / tf_seconds:8.2f} {rss / tf_rss:8.2f}\n")
            # Rounds alternate bare and served generation, and the medians of their p50s are
            # compared, because this machine's timings drift from one minute to the next.
            rounds = [(bare(home, 100), load(port, 100, 1)) for _ in range(3)]
            bare_p50 = statistics.median(r[0]["p50"] for r in rounds)
            print(
                f"64 tokens, {arguments.family}-{arguments.hidden}: "
                f"{'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'failed':>7} {'p50 - bare':>11}"
            )
            bare_single = {
                key: statistics.median(r[0][key] for r in rounds)
                for key in ("p50", "p99", "throughput", "failed")
            }
            single = {
                key: statistics.median(r[1][key] for r in rounds)
                for key in ("p50", "p99", "throughput", "failed")
            }
            cores = os.cpu_count() or 2
            measured_rows = [
                ("bare onnxruntime, 1 thread", bare_single),
                ("server, concurrency 1", single),
                (f"bare onnxruntime, {cores} threads", bare(home, arguments.requests, cores)),
            ]
            for concurrency in (8, 32):
                measured_rows.append(
                    (
                        f"server, concurrency {concurrency}",
                        load(port, arguments.requests, concurrency),
                    )
                )
            for name, measured in measured_rows:
                print(
                    f"{name:34}{measured['p50']:8.2f} {measured['p99']:8.2f} "
                    f"{measured['throughput']:8.1f} {int(measured['failed']):7d} "
                    f"{measured['p50'] - bare_p50:10.2f}",
                    flush=True,
                )
        finally:
            process.terminate()
            process.wait()
    print(f"\nms per generated token after N characters ({arguments.family}-{arguments.hidden}):")
    print(f"{'context':>8} {'step graph':>11} {'window rerun':>13} {'window/step':>12}")
    for context, step, window in context_costs(arguments.family, arguments.hidden):
        print(f"{context:8d} {step:11.3f} {window:13.3f} {window / step:12.1f}")


if __name__ == "__main__":
    main()
