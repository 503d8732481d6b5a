"""The production profile's processes on one machine: its databases, the MLflow tracking
server and the Celery workers, all read from environment variables (deploy/profile.env holds
the loopback defaults). `thunder prod up` and `thunder prod run` use this module, and so do the
tests, so what the tests start is what users start.

Nothing here imports Dagster: the workers and MLflow are separate processes, started with the
commands docs/DEPLOYMENT.md gives, each in its own process group so that stopping one stops its
children (Celery's pool processes, MLflow's server workers) too.
"""

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from thunder_dagster import settings

REPO_ROOT = Path(__file__).resolve().parents[2]
INSTANCE_TEMPLATE = REPO_ROOT / "deploy" / "dagster.yaml"
BIN = Path(sys.executable).parent
TRAINING_POOL = "training"

# The variables the profile reads; `thunder prod check` says which are missing.
REQUIRED = (
    settings.DAGSTER_PG_URL,
    settings.OPTUNA_URL,
    settings.QUERY_DB_URL,
    settings.MLFLOW_DB_URL,
    settings.MLFLOW_TRACKING_URI,
    settings.CELERY_BROKER,
)


class ProfileError(RuntimeError):
    """The profile cannot start; the message names the variable or service and what to do."""


@dataclass(frozen=True)
class Profile:
    dagster_url: str
    optuna_url: str
    queries_url: str
    mlflow_db_url: str
    mlflow_uri: str
    broker: str
    workers: int

    @classmethod
    def from_environment(cls) -> "Profile":
        missing = [variable.name for variable in REQUIRED if not variable.is_set()]
        if missing:
            raise ProfileError(
                f"the production profile needs {', '.join(missing)}: source deploy/profile.env "
                "(loopback defaults) or set them to your services' URLs"
            )
        if settings.EXECUTOR.value() != "celery":
            raise ProfileError("THUNDER_EXECUTOR must be celery in the production profile")
        workers = settings.WORKERS.value() if settings.WORKERS.is_set() else "2"
        if not workers.isdigit() or int(workers) < 1:
            raise ProfileError(f"THUNDER_WORKERS={workers!r}: give a whole number of workers, >= 1")
        return cls(
            dagster_url=settings.DAGSTER_PG_URL.value(),
            optuna_url=settings.OPTUNA_URL.value(),
            queries_url=settings.QUERY_DB_URL.value(),
            mlflow_db_url=settings.MLFLOW_DB_URL.value(),
            mlflow_uri=settings.MLFLOW_TRACKING_URI.value(),
            broker=settings.CELERY_BROKER.value(),
            workers=int(workers),
        )

    @property
    def database_urls(self) -> tuple[str, ...]:
        return (self.dagster_url, self.optuna_url, self.queries_url, self.mlflow_db_url)


def _display(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def ensure_databases(urls) -> list[str]:
    """Create each PostgreSQL database that does not exist yet; the names it created."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    created = []
    for url in urls:
        parsed = make_url(url)
        if not parsed.drivername.startswith("postgresql"):
            continue
        admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as connection:
                exists = connection.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"),
                    {"name": parsed.database},
                ).first()
                if not exists:
                    connection.exec_driver_sql(f'CREATE DATABASE "{parsed.database}"')
                    created.append(parsed.database)
        except Exception as error:
            raise ProfileError(
                f"PostgreSQL at {_display(url)} is not reachable or refused CREATE DATABASE "
                f"({str(error).splitlines()[0]}): start it, or fix the URL's variable"
            ) from error
        finally:
            admin.dispose()
    return created


def install_instance(dagster_home: Path) -> Path:
    """Put the profile's dagster.yaml (PostgreSQL storage, run monitoring) into DAGSTER_HOME."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    target = dagster_home / "dagster.yaml"
    shutil.copyfile(INSTANCE_TEMPLATE, target)
    return target


def _start(command: list[str], log: Path, env: dict[str, str]) -> subprocess.Popen:
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        return subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def stop(process: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process group (a Celery worker finishes its step first), then SIGKILL."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def worker_command(name: str) -> list[str]:
    return [
        str(BIN / "celery"),
        "--app",
        "thunder_dagster.runtime.celery_app",
        "worker",
        "--hostname",
        f"{name}@%h",
        "--queues",
        "dagster",
        "--concurrency",
        "1",
        "--prefetch-multiplier",
        "1",
        "--loglevel",
        "INFO",
    ]


def start_worker(
    name: str, logs: Path, env: dict[str, str], timeout: float = 90
) -> subprocess.Popen:
    """A Celery worker taking one step at a time from the `dagster` queue, once it is ready."""
    log = logs / f"worker-{name}.log"
    offset = log.stat().st_size if log.exists() else 0
    process = _start(worker_command(name), log, env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProfileError(f"Celery worker {name} exited at start; see {log}")
        with open(log, "rb") as handle:
            handle.seek(offset)
            if b" ready." in handle.read():
                return process
        time.sleep(0.3)
    stop(process)
    raise ProfileError(f"Celery worker {name} was not ready within {timeout:g} s; see {log}")


def mlflow_command(profile: Profile, artifacts: Path) -> list[str]:
    from urllib.parse import urlsplit

    address = urlsplit(profile.mlflow_uri)
    return [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        profile.mlflow_db_url,
        # Artifacts go through the server to a shared path: clients need no access to it.
        "--artifacts-destination",
        str(artifacts),
        "--host",
        address.hostname or "127.0.0.1",
        "--port",
        str(address.port or 5000),
        "--workers",
        "1",
    ]


def set_pool_limit(pool: str, limit: int, env: dict[str, str]) -> None:
    """As many `training` steps at once as there are workers, so parallel search steps (and
    trainings of different agents) each get one; the instance's default limit is 1."""
    result = subprocess.run(
        [str(BIN / "dagster"), "instance", "concurrency", "set", pool, str(limit)],
        capture_output=True,
        text=True,
        env=env,
    )
    if result.returncode != 0:
        raise ProfileError(
            f"could not set the {pool!r} pool's limit on the instance in $DAGSTER_HOME: "
            f"{(result.stderr or result.stdout).strip()[-500:]}"
        )


def _healthy(uri: str) -> bool:
    try:
        with urllib.request.urlopen(f"{uri.rstrip('/')}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def start_mlflow(
    profile: Profile, home_root: Path, env: dict[str, str], timeout: float = 180
) -> subprocess.Popen | None:
    """The MLflow tracking server on its PostgreSQL store; None when one already answers."""
    if _healthy(profile.mlflow_uri):
        return None
    logs = home_root / "logs"
    command = mlflow_command(profile, home_root / "mlflow-artifacts")
    process = _start(command, logs / "mlflow.log", env)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ProfileError(f"the MLflow server exited at start; see {logs / 'mlflow.log'}")
        if _healthy(profile.mlflow_uri):
            return process
        time.sleep(0.5)
    stop(process)
    raise ProfileError(
        f"the MLflow server did not answer {profile.mlflow_uri} within {timeout:g} s; "
        f"see {logs / 'mlflow.log'}"
    )


@contextlib.contextmanager
def running(
    profile: Profile, home_root: Path, dagster_home: Path, echo=print
) -> Iterator[list[subprocess.Popen]]:
    """Databases ensured, MLflow and the workers started; all stopped on the way out. The
    processes get this home and Dagster instance in their environment."""
    env = settings.child_environment(
        {settings.HOME.name: str(home_root), settings.DAGSTER_HOME.name: str(dagster_home)}
    )
    created = ensure_databases(profile.database_urls)
    if created:
        echo(f"created databases: {', '.join(created)}")
    processes: list[subprocess.Popen] = []
    try:
        mlflow = start_mlflow(profile, home_root, env)
        if mlflow is not None:
            processes.append(mlflow)
        echo(f"MLflow at {profile.mlflow_uri}")
        for index in range(1, profile.workers + 1):
            processes.append(start_worker(f"w{index}", home_root / "logs", env))
        echo(f"{profile.workers} Celery worker(s) on {_display(profile.broker)}")
        set_pool_limit(TRAINING_POOL, profile.workers, env)
        echo(f"pool {TRAINING_POOL!r}: {profile.workers} step(s) at a time")
        yield processes
    finally:
        for process in reversed(processes):
            stop(process)
