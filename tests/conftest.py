import os
from pathlib import Path

import pytest

from thunder_dagster.home import Home

REPO_ROOT = Path(__file__).resolve().parents[1]
CORPUS = REPO_ROOT.parent / "shared" / "corpus"


@pytest.fixture
def home(tmp_path, monkeypatch) -> Home:
    """A fresh THUNDER_HOME for one test; nothing leaks into the working copy's .thunder/."""
    root = tmp_path / "thunder"
    monkeypatch.setenv("THUNDER_HOME", str(root))
    monkeypatch.setenv("DAGSTER_HOME", str(root / "dagster"))
    (root / "dagster").mkdir(parents=True)
    return Home.resolve(root)


@pytest.fixture
def corpus() -> Path:
    if not CORPUS.is_dir():
        pytest.fail(f"the shared test corpus is missing: expected it at {CORPUS}")
    return CORPUS


def write(path: Path, data: bytes | str, mtime_ns: int | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.write_bytes(data)
    if mtime_ns is not None:
        os.utime(path, ns=(mtime_ns, mtime_ns))
    return path
