"""The bundled sample agent: a few documents in each category, for the demo and the tests."""

import shutil
from pathlib import Path

from thunder_dagster.home import Home

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_AGENT_DIR = REPO_ROOT / "samples" / "agent"


def copy_sample_agent(home: Home, agent_id: str) -> int:
    """Copy the bundled sample documents into the agent's folders, leaving unchanged files be."""
    copied = 0
    for source in sorted(SAMPLE_AGENT_DIR.rglob("*")):
        if not source.is_file():
            continue
        target = home.agent_dir(agent_id) / source.relative_to(SAMPLE_AGENT_DIR)
        if target.exists() and target.read_bytes() == source.read_bytes():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied += 1
    return copied
