"""Real processes in the integration tests: waiting on them, the Dagster daemon, a host's death."""

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.factories import REPO_ROOT

BIN = Path(sys.executable).parent


def wait_for(predicate, timeout: float, what: str, *logs: Path):
    """Poll until predicate() is truthy and return its value; fail with the logs' tails."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    tails = "\n".join(f"--- {log}:\n{log.read_text()[-3000:]}" for log in logs if log.exists())
    pytest.fail(f"{what} within {timeout:g} s\n{tails}")


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant: a host dying takes all of them at once."""
    with contextlib.suppress(psutil.NoSuchProcess):
        root = psutil.Process(pid)
        for process in [*root.children(recursive=True), root]:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.send_signal(signal.SIGKILL)


def start_daemon(log: Path, env: dict | None = None) -> subprocess.Popen:
    """`dagster-daemon run` on the repo's workspace, in its own process group."""
    with open(log, "ab") as out:
        return subprocess.Popen(
            [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"],
            cwd=REPO_ROOT,
            env={**os.environ, **(env or {})},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_daemon(process: subprocess.Popen) -> None:
    """SIGTERM the daemon's process group; SIGKILL whatever is left after 30 s."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            kill_tree(process.pid)
            process.wait()
