"""The server image's promise, tested on the real process: `thunder serve` answers generate,
grounded generate, search, feedback, the admin API, /healthz and /metrics with the training
side's libraries (TensorFlow, Keras, Dagster, MLflow, Optuna, pandas, ...) made unimportable,
and every distribution it does load is one requirements/server.txt installs."""

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.request
from pathlib import Path

import pytest

from bench.server_footprint import installed_closure, name_of, server_requirements
from tests.factories import CORPUS, REPO_ROOT, deploy_tiny, free_port, index_agent

pytestmark = [pytest.mark.slow, pytest.mark.integration]

# What the training side needs and a server must not: the image without them is the point.
TRAINING_ONLY = (
    "tensorflow",
    "keras",
    "tf2onnx",
    "keras_tuner",
    "dagster",
    "dagster_graphql",
    "dagster_mlflow",
    "dagster_celery",
    "mlflow",
    "optuna",
    "pandas",
    "matplotlib",
    "pymupdf",
    "fitz",
    "docx",
    "celery",
    "apprise",
)

# Loaded here because this environment has them, needed by nothing the server runs.
OPTIONAL = {
    "setuptools": "its distutils-precedence.pth loads _distutils_hack at every interpreter start",
}

BLOCKER = """
import atexit, importlib.abc, json, os, sys

BLOCKED = set({blocked!r})


class Blocked(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{{name}} is not in the server image")
        return None


sys.meta_path.insert(0, Blocked())


@atexit.register
def _loaded():
    files = {{getattr(m, "__file__", None) for m in list(sys.modules.values())}}
    with open(os.environ["THUNDER_LOADED_MODULES"], "w") as out:
        json.dump(sorted(os.path.realpath(f) for f in files if f), out)
"""


def call(url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_the_server_runs_without_the_training_libraries_on_server_txt_alone(home, tmp_path):
    import importlib.metadata

    deploy_tiny(home, "acme")
    text = (CORPUS / "text" / "tinyshakespeare.txt").read_text()[:4000]
    index_agent(home, "acme", {"play.txt": text})
    # The server writes the encoder's graph again from its weights, as a fresh image does.
    shutil.rmtree(home.encoder_cache_dir)
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(textwrap.dedent(BLOCKER.format(blocked=TRAINING_ONLY)))
    loaded = tmp_path / "loaded.json"
    env = dict(os.environ, PYTHONPATH=str(site), THUNDER_LOADED_MODULES=str(loaded))
    port = free_port()
    log = tmp_path / "server.log"
    with open(log, "w") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "thunder"), "serve", "--port", str(port)],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if call(f"{url}/healthz")["agents"].get("acme"):
                    break
            except OSError:
                pass
            assert process.poll() is None, log.read_text()[-3000:]
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        prompt = {"prompt": "First Citizen", "max_tokens": 8, "user_id": "u"}
        answer = call(f"{url}/v1/agents/acme/generate", prompt)
        grounded = call(f"{url}/v1/agents/acme/generate", prompt | {"grounding": "retrieved"})
        assert answer["model_version"] == "1.0.0" and grounded["sources"]
        hits = call(f"{url}/v1/agents/acme/search", {"query": "poor citizens", "k": 2})
        assert len(hits["results"]) == 2
        rated = call(f"{url}/v1/feedback", {"query_id": answer["query_id"], "score": 4})
        assert rated["stored"] is True
        assert call(f"{url}/v1/admin/deployments")[0]["roles"]["champion"]["version"] == "1.0.0"
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
            assert b"thunder_requests_total" in response.read()
    finally:
        # SIGINT: uvicorn shuts down, re-raises it, and Python exits through its atexit hooks
        # (a SIGTERM it re-raises ends the process before them).
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
    server_log = log.read_text()
    assert "is not in the server image" not in server_log, server_log[-3000:]
    loaded_files = set(json.loads(loaded.read_text()))
    assert not any(f"/{name}/" in path for path in loaded_files for name in TRAINING_ONLY)
    distributions = set()
    for distribution in importlib.metadata.distributions():
        located = {os.path.realpath(distribution.locate_file(f)) for f in distribution.files or ()}
        if located & loaded_files:
            distributions.add(name_of(distribution.metadata["Name"]))
    declared = installed_closure(server_requirements())
    assert not declared & {"tensorflow", "tensorflow-cpu", "keras", "mlflow", "optuna"}
    missing = distributions - declared - {"thunder-dagster", *OPTIONAL}
    assert missing == set(), f"the server loaded {sorted(missing)}: add them to server.txt"
