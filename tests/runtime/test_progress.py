"""The progress bar: its step count over mapped steps, and `thunder ingest` on a real terminal."""

import os
import pty
import re
import subprocess
import sys
from pathlib import Path

from tests.factories import REPO_ROOT
from thunder_dagster.runtime.progress import StepCount, render
from thunder_dagster.samples import copy_sample_agent


def test_an_unresolved_mapped_step_counts_as_the_copies_seen():
    count = StepCount(["plan", "search[?]", "collect"])
    assert count.total == 3
    count.started("search[0]")
    count.started("search[1]")
    count.finished("plan")
    assert count.total == 4
    line = render(count, "search[1]", "trial 2 (3/4) epoch 1/3", 200)
    assert line.startswith("[######..................] 1/4 steps  search[1]: trial 2 (3/4)")
    assert len(render(count, "search[1]", "x" * 500, 80)) == 79


def run_on_terminal(command: list[str], env: dict) -> tuple[int, str]:
    """Run `command` with a pseudo-terminal as its stdout and stderr; return its output."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        command, stdin=follower, stdout=follower, stderr=follower, env=env, cwd=REPO_ROOT
    )
    os.close(follower)
    output = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        output += chunk
    os.close(leader)
    return process.wait(timeout=60), output.decode(errors="replace")


def test_thunder_ingest_draws_a_bar_over_its_steps_on_a_terminal(home):
    home.create_agent("sample")
    copy_sample_agent(home, "sample")
    code, output = run_on_terminal(
        [str(Path(sys.executable).parent / "thunder"), "ingest", "sample"], dict(os.environ)
    )
    assert code == 0, output[-3000:]
    frames = [frame for frame in re.split(r"\r\x1b\[2K", output) if frame.startswith("[")]
    assert frames, output[-3000:]
    # documents, chunks, training_dataset, labelled_examples, chunk_embeddings, retrieval_index
    assert re.match(r"\[#{24}\] 6/6 steps", frames[-1]), frames[-1]
    # The INFO lines of Dagster's console logger give way to the bar; the summary stays.
    assert "STEP_SUCCESS" not in output and "9 files: 9 ok" in output
