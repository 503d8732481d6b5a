import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.factories import CORPUS, REPO_ROOT
from tests.loopback_openai import endpoint  # noqa: F401 (the loopback API B, a fixture)
from tests.processes import BIN
from thunder_dagster.feedback.store import QueryStore
from thunder_dagster.home import Home

# `make test` runs the suite on two pytest-xdist workers. Each module runs whole on one worker,
# so a module fixture is built once; the modules of a group below run one after another on one
# worker: those that use PostgreSQL and Redis or stop them (marked SERVICES), and those that
# share a costly session fixture (built once). The longest groups start first, so that neither
# worker is left with one at the end.
GROUPS = {
    "services": (
        "tests/feedback/test_store.py",
        "tests/modeling/test_tuning.py",
        "tests/production/test_celery_profile.py",
        "tests/production/test_faults.py",
        "tests/production/test_instance.py",
        "tests/serving/test_api_fuzz_postgres.py",
        "tests/serving/test_frozen_store.py",
        "tests/serving/test_spool.py",
    ),
    # The session's demo and instruct base: the CLI tests use both.
    "session-models": (
        "tests/e2e/test_browser.py",
        "tests/e2e/test_server.py",
        "tests/instruct/test_base.py",
        "tests/instruct/test_grounding.py",
        "tests/serving/test_api_fuzz.py",
        "tests/serving/test_chat.py",
        "tests/test_cli.py",
    ),
}
GROUP_OF = {module: group for group, modules in GROUPS.items() for module in modules}
SHARED_FIXTURES = {"trained_sample": "session-models", "instruct_base": "session-models"}
FIRST = ("services", "session-models", "tests/e2e/")


def scope_of(nodeid: str) -> str:
    """The unit of work a worker takes whole: the test's group, or else its module."""
    module = nodeid.split("::")[0]
    return GROUP_OF.get(module, module)


class GroupScheduling:
    """pytest-xdist's loadgroup marks a test's group by rewriting its node id, which pytest 9
    no longer reads; this plugin's scheduler takes the groups from GROUPS instead."""

    def pytest_xdist_make_scheduler(self, config, log):
        from xdist.scheduler import LoadScopeScheduling

        class ByGroup(LoadScopeScheduling):
            def _split_scope(self, nodeid: str) -> str:
                return scope_of(nodeid)

        return ByGroup(config, log)


def pytest_configure(config: pytest.Config) -> None:
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(GroupScheduling(), "thunder-worker-groups")


def needed_groups(module: list[pytest.Item]) -> set[str]:
    """The groups a module must be in: for the services it marks, the fixtures it shares."""
    used = {name for item in module for name in item.fixturenames}
    needed = {group for fixture, group in SHARED_FIXTURES.items() if fixture in used}
    marks = (mark for item in module for mark in item.iter_markers("xdist_group"))
    return needed | {mark.args[0] for mark in marks}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    for path, module in modules.items():
        wrong = needed_groups(module) - {GROUP_OF.get(path)}
        if wrong:
            raise pytest.UsageError(
                f"{path} needs the worker group {sorted(wrong)[0]!r}: list it under that "
                "group in GROUPS in tests/conftest.py"
            )

    def rank(item: pytest.Item) -> int:
        scope = scope_of(item.nodeid)
        return next((at for at, first in enumerate(FIRST) if scope.startswith(first)), len(FIRST))

    items.sort(key=rank)


# A test marked `clock` (its answers depend on the day and the hour) runs three times: in the
# process's own zone and in two far from UTC on either side, where every time inside must still
# be UTC. The zone is the process's TZ, set and reset around the test (time.tzset), so the
# processes it starts run in it too.
ZONES = ("here", "Pacific/Honolulu", "Asia/Kolkata")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.definition.get_closest_marker("clock"):
        metafunc.parametrize("zone", ZONES, indirect=True)


@pytest.fixture(autouse=True)
def zone(request):
    name = getattr(request, "param", "here")
    if name == "here":
        yield name
        return
    before = os.environ.get("TZ")
    os.environ["TZ"] = name
    time.tzset()
    try:
        yield name
    finally:
        if before is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = before
        time.tzset()


@pytest.fixture(scope="session", autouse=True)
def encoder_cache(tmp_path_factory) -> Path:
    """One sentence-encoder graph for the whole session (and its subprocesses), not one per
    test home."""
    folder = tmp_path_factory.mktemp("encoders")
    os.environ["THUNDER_ENCODER_CACHE"] = str(folder)
    return folder


@dataclass(frozen=True)
class BuiltBase:
    model: object  # BaseModel
    card: object  # InstructCard
    materialization: object  # the instruct_base asset's materialization that built it
    checks: list  # its check evaluations

    def __iter__(self):
        return iter((self.model, self.card))


@pytest.fixture(scope="session")
def instruct_base(tmp_path_factory) -> BuiltBase:
    """The instruct base's graph, built and checked once for the session by materializing the
    instruct_base asset, and shared with its subprocesses through THUNDER_BASE_CACHE; unpacks
    as (BaseModel, InstructCard)."""
    import dagster as dg

    from thunder_dagster.assets.bases import instruct_base as asset
    from thunder_dagster.instruct.builds import load_base
    from thunder_dagster.resources.home import ThunderHome

    folder = tmp_path_factory.mktemp("bases")
    os.environ["THUNDER_BASE_CACHE"] = str(folder)
    root = tmp_path_factory.mktemp("base-home")
    result = dg.materialize([asset], resources={"thunder": ThunderHome(root=str(root))})
    assert result.success
    (materialization,) = result.asset_materializations_for_node("instruct_base")
    model, card = load_base(folder, build=False)
    return BuiltBase(model, card, materialization, result.get_asset_check_evaluations())


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


# The demo's budget in work, not wall time: one trial of one epoch, then one epoch of final
# training (100 batches each), with minutes that never bind: a busy machine takes longer
# instead of deploying a worse model (2.24 nats/char against the unigram's 3.02 here).
DEMO = ["demo", "--trials", "1", "--minutes", "10", "--epochs", "1"]


@dataclass(frozen=True)
class TrainedSample:
    home: Home
    env: dict[str, str]  # THUNDER_HOME and DAGSTER_HOME of `home`, over this environment
    output: str  # what `thunder demo` printed


@pytest.fixture(scope="session")
def trained_sample(tmp_path_factory) -> TrainedSample:
    """`thunder demo` run once for the session, in a process of its own, on a home of its own:
    the sample agent ingested, searched, trained, exported and deployed on an embedded
    instance. The demo test reads what it printed, the browser test serves its instance; the
    tests that use it read it and add nothing that another one checks."""
    root = tmp_path_factory.mktemp("trained-sample") / "thunder"
    (root / "dagster").mkdir(parents=True)
    env = {**os.environ, "THUNDER_HOME": str(root), "DAGSTER_HOME": str(root / "dagster")}
    done = subprocess.run(
        [str(BIN / "thunder"), *DEMO],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return TrainedSample(Home.resolve(root), env, done.stdout)
