"""deploy/prometheus/ checked by Prometheus' own tools: the config and rules parse
(`promtool check`), each alert fires on its synthetic series and not before (`promtool test
rules`), and a real Prometheus scrapes a running `thunder serve` and answers for a series it
recorded."""

import json
import math
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.factories import REPO_ROOT, free_port
from tests.processes import wait_for

PROMETHEUS_DIR = REPO_ROOT / "deploy" / "prometheus"


def require(tool: str) -> str:
    found = shutil.which(tool)
    if found:
        return found
    message = (
        f"{tool} missing: install Debian's prometheus (apt-get install prometheus; .ci/run does)"
    )
    if os.environ.get("THUNDER_REQUIRE_PROMETHEUS"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.mark.parametrize(
    "arguments",
    [["check", "config", "prometheus.yml"], ["check", "rules", "rules.yml"]],
    ids=["config", "rules"],
)
def test_promtool_accepts_the_config_and_rules(arguments):
    done = subprocess.run(
        [require("promtool"), *arguments], cwd=PROMETHEUS_DIR, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_each_alert_rule_passes_its_promtool_unit_test():
    done = subprocess.run(
        [require("promtool"), "test", "rules", "rules_test.yml"],
        cwd=PROMETHEUS_DIR,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and "SUCCESS" in done.stdout, done.stdout + done.stderr


def search(base: str) -> int:
    """A search for an agent the server does not have: the status it answered."""
    request = urllib.request.Request(
        f"{base}/v1/agents/nobody/search",
        data=json.dumps({"query": "hello", "k": 3}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status
    except urllib.error.HTTPError as refused:
        return refused.code


def instant(api: str):
    """The result of an instant query, or None while Prometheus cannot answer it."""
    try:
        answer = get_json(api)
    except OSError:
        return None
    return answer["data"]["result"] if answer.get("status") == "success" else None


def get_json(url: str):
    with urllib.request.urlopen(url, timeout=2) as response:
        return json.loads(response.read())


@pytest.mark.integration
def test_a_real_prometheus_scrapes_the_server_and_answers_for_a_recorded_series(home, tmp_path):
    prometheus = require("prometheus")
    server_port, prometheus_port = free_port(), free_port()
    server_log, prometheus_log = tmp_path / "server.log", tmp_path / "prometheus.log"
    config = tmp_path / "prometheus.yml"
    # The shipped config, pointed at this test's server and scraping every second.
    text = (PROMETHEUS_DIR / "prometheus.yml").read_text()
    text = text.replace("127.0.0.1:8000", f"127.0.0.1:{server_port}")
    text = text.replace("scrape_interval: 15s", "scrape_interval: 1s")
    text = text.replace("evaluation_interval: 15s", "evaluation_interval: 1s")
    config.write_text(text)
    shutil.copy(PROMETHEUS_DIR / "rules.yml", tmp_path / "rules.yml")
    thunder = Path(sys.executable).parent / "thunder"
    processes = []
    try:
        with open(server_log, "w") as out:
            processes.append(
                subprocess.Popen(
                    [str(thunder), "serve", "--port", str(server_port)],
                    cwd=REPO_ROOT,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        base = f"http://127.0.0.1:{server_port}"

        def healthy():
            try:
                return get_json(f"{base}/healthz")
            except OSError:
                return None

        wait_for(healthy, 60, "the server did not come up", server_log)
        for _ in range(3):
            assert search(base) == 404
        with open(prometheus_log, "w") as out:
            processes.append(
                subprocess.Popen(
                    [
                        prometheus,
                        f"--config.file={config}",
                        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                        f"--web.listen-address=127.0.0.1:{prometheus_port}",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            )
        wanted = 'thunder_requests_total{endpoint="/v1/agents/{agent_id}/search",status="404"}'
        query = urllib.parse.quote(wanted)
        api = f"http://127.0.0.1:{prometheus_port}/api/v1/query?query={query}"

        (series,) = wait_for(
            lambda: instant(api), 60, "Prometheus recorded no series", prometheus_log
        )
        assert series["metric"]["job"] == "thunder-serve"
        assert series["metric"]["agent"] == "other"  # an unknown agent is no label value
        assert float(series["value"][1]) == 3.0
        targets = get_json(f"http://127.0.0.1:{prometheus_port}/api/v1/targets")
        (target,) = targets["data"]["activeTargets"]
        assert target["health"] == "up"
        rules = get_json(f"http://127.0.0.1:{prometheus_port}/api/v1/rules")
        names = {rule["name"] for group in rules["data"]["groups"] for rule in group["rules"]}
        assert "ThunderHighLatency" in names
        # The recording rule's p95, once requests keep coming between scrapes.
        busy = threading.Event()

        def keep_asking():
            while not busy.wait(0.1):
                search(base)

        threading.Thread(target=keep_asking, daemon=True).start()
        p95 = urllib.parse.quote('thunder:request_seconds:p95_5m{endpoint=~".*/search"}')
        rule_api = f"http://127.0.0.1:{prometheus_port}/api/v1/query?query={p95}"

        def finite():
            found = instant(rule_api)
            return found if found and math.isfinite(float(found[0]["value"][1])) else None

        try:
            (recorded,) = wait_for(finite, 60, "no recorded p95", prometheus_log)
        finally:
            busy.set()
        assert 0 < float(recorded["value"][1]) < 5  # seconds: a 404 is quick
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=20)
