import os
from pathlib import Path

import pytest

from tests.factories import CORPUS
from tests.loopback_openai import endpoint  # noqa: F401 (the loopback API B, a fixture)
from thunder_dagster.feedback.store import QueryStore
from thunder_dagster.home import Home


@pytest.fixture(scope="session", autouse=True)
def encoder_cache(tmp_path_factory) -> Path:
    """One sentence-encoder graph for the whole session (and its subprocesses), not one per
    test home."""
    folder = tmp_path_factory.mktemp("encoders")
    os.environ["THUNDER_ENCODER_CACHE"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def instruct_base(tmp_path_factory):
    """The instruct base's graph, built and checked once for the session (and its
    subprocesses, through THUNDER_BASE_CACHE): (BaseModel, InstructCard)."""
    from thunder_dagster.instruct.builds import build_base, load_base

    folder = tmp_path_factory.mktemp("bases")
    os.environ["THUNDER_BASE_CACHE"] = str(folder)
    build_base(folder)
    return load_base(folder, build=False)


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


@pytest.fixture
def store(home):
    """The query-log store of the test's home, open for the test."""
    with QueryStore.open(home.queries_db_url) as opened:
        yield opened
