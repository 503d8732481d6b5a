"""Every environment variable thunder-dagster reads, named once, with its default and meaning.

Read one with `settings.EXECUTOR.value()`; nothing else in the package touches os.environ for
its own configuration. A blank value counts as unset. deploy/profile.env holds the production
profile's values.
"""

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    meaning: str

    def value(self) -> str:
        return os.environ.get(self.name, "").strip() or self.default

    def is_set(self) -> bool:
        return bool(os.environ.get(self.name, "").strip())


HOME = Variable(
    "THUNDER_HOME", ".thunder", "The state root: uploads, models, deployments, databases"
)
DAGSTER_HOME = Variable(
    "DAGSTER_HOME",
    "",
    "The Dagster instance's folder; the CLI defaults it to $THUNDER_HOME/dagster",
)
EXECUTOR = Variable(
    "THUNDER_EXECUTOR", "in_process", "Where steps run: in_process, or celery (on the workers)"
)
WORKERS = Variable(
    "THUNDER_WORKERS", "", "Celery workers of the production profile; the default search steps"
)
CELERY_BROKER = Variable("THUNDER_CELERY_BROKER", "", "Celery broker URL (Redis or RabbitMQ)")
CELERY_BACKEND = Variable(
    "THUNDER_CELERY_BACKEND", "", "Celery result backend URL; empty means the broker's"
)
TIMEZONE = Variable(
    "THUNDER_TIMEZONE", "UTC", "Zone of the daily analysis' days and of its 02:00 schedule"
)
TRAINING_DEBOUNCE = Variable(
    "THUNDER_TRAINING_DEBOUNCE", "60", "Seconds a dataset must be still before training starts"
)
TRIAL_STALE_SECONDS = Variable(
    "THUNDER_TRIAL_STALE_SECONDS",
    "30",
    "Seconds a search trial may go without a heartbeat (it beats every third of them) before "
    "it counts as dead, as when its worker is killed, and is queued to run again",
)
SENSOR_INTERVAL = Variable(
    "THUNDER_SENSOR_INTERVAL", "5", "Seconds between the upload sensor's looks at the folders"
)
MAX_UPLOAD_BYTES = Variable(
    "THUNDER_MAX_UPLOAD_BYTES",
    str(512 * 2**20),
    "Bytes an uploaded file may hold; a larger one is refused by name and never hashed",
)
MAX_BODY_BYTES = Variable(
    "THUNDER_MAX_BODY_BYTES",
    str(2**20),
    "Bytes a request body to the model server may hold; a larger one gets 413 unread",
)
MAX_WAITING = Variable(
    "THUNDER_MAX_WAITING",
    "32",
    "Requests that may wait for an answering thread; past them the server answers 503 with "
    "Retry-After",
)
RATE_LIMIT = Variable(
    "THUNDER_RATE_LIMIT",
    "0",
    "Requests a minute one API key (on an open server, one client address) may make; over it, "
    "429 with Retry-After; 0: no limit",
)
MAX_WORK_TOKENS = Variable(
    "THUNDER_MAX_WORK_TOKENS",
    "4096",
    "The most tokens one request may ask to generate in all (best_of x max_tokens)",
)
DB_TIMEOUT_SECONDS = Variable(
    "THUNDER_DB_TIMEOUT_SECONDS",
    "10",
    "PostgreSQL's connect and statement timeout for the query-log store, in seconds",
)
QUERY_DB_URL = Variable(
    "THUNDER_QUERY_DB_URL", "", "SQLAlchemy URL of the query logs; empty: $THUNDER_HOME/queries.db"
)
OPTUNA_URL = Variable(
    "THUNDER_OPTUNA_URL", "", "SQLAlchemy URL of the Optuna studies; empty: $THUNDER_HOME/optuna.db"
)
MLFLOW_TRACKING_URI = Variable(
    "MLFLOW_TRACKING_URI", "", "MLflow tracking and registry URI; empty: $THUNDER_HOME/mlflow"
)
DAGSTER_PG_URL = Variable(
    "THUNDER_DAGSTER_PG_URL", "", "PostgreSQL URL of the production profile's Dagster instance"
)
MLFLOW_DB_URL = Variable(
    "THUNDER_MLFLOW_DB_URL", "", "Backend store of the production profile's MLflow server"
)

ENCODER_CACHE = Variable(
    "THUNDER_ENCODER_CACHE",
    "",
    "Folder of the sentence encoders' ONNX graphs, written once per encoder version; empty: "
    "$THUNDER_HOME/cache/encoders",
)
BASE_CACHE = Variable(
    "THUNDER_BASE_CACHE",
    "",
    "Folder of the instruct base's checked ONNX graphs, one per base file; empty: "
    "$THUNDER_HOME/bases",
)
ALERT_URLS = Variable(
    "THUNDER_ALERT_URLS",
    "",
    "Where alerts go: Apprise URLs (mailto://, json://, slack://, msteams://, ...), separated "
    "by spaces or commas; empty: alerts are recorded and shown, not sent",
)

SPOOL_DIR = Variable(
    "THUNDER_SPOOL_DIR",
    "",
    "Where the model server keeps answers the query-log store could not take yet; empty: "
    "$THUNDER_HOME/spool",
)

DAGSTER_URL = Variable(
    "THUNDER_DAGSTER_URL",
    "",
    "The Dagster webserver the model server's admin API starts, watches and cancels runs "
    "through (e.g. http://127.0.0.1:3000); empty: the endpoints that start runs are not offered",
)

TEACHER_URL = Variable(
    "THUNDER_TEACHER_URL",
    "",
    "API B: the base URL of an OpenAI-compatible chat-completions endpoint (e.g. "
    "https://api.example.com/v1) that answers when the local model is unsure and the agent has "
    "no local teacher; empty: no external teacher",
)

TEACHER_MODEL = Variable(
    "THUNDER_TEACHER_MODEL", "", "API B: the model name the endpoint is asked for"
)

TEACHER_API_KEY = Variable(
    "THUNDER_TEACHER_API_KEY",
    "",
    "API B: the endpoint's API key (sent as a Bearer token; never logged or shown)",
)

TEACHER_SECONDS = Variable(
    "THUNDER_TEACHER_SECONDS",
    "10",
    "API B: the time budget of one answer, retries included; past it the local answer is "
    "returned, flagged",
)

SERVER_THREADS = Variable(
    "THUNDER_SERVER_THREADS",
    "",
    "Threads the model server answers on (one request each); empty: the CPUs this process may "
    "use (its affinity and cgroup quota, not the node's core count)",
)

ORT_THREADS = Variable(
    "THUNDER_ORT_THREADS",
    "",
    "Threads one onnxruntime session computes with; empty: the CPUs this process may use",
)


def configure_library(values: dict[str, str], keep: tuple[str, ...] = ()) -> None:
    """Set variables a library reads its configuration from (MLflow's HTTP retries,
    TensorFlow's log level); the names in `keep` only where the user has not set them."""
    for name, value in values.items():
        if name in keep:
            os.environ.setdefault(name, value)
        else:
            os.environ[name] = value


def child_environment(overrides: dict[str, str]) -> dict[str, str]:
    """This process's environment with `overrides`, for a process it starts."""
    return {**os.environ, **overrides}


def usable_cpus() -> int:
    """The CPUs this process may run on: its affinity mask, bounded by a cgroup v2 CPU quota
    (a container limited to 2 CPUs on a 64-core node gets 2, where os.cpu_count() says 64)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
    except (OSError, ValueError):
        return max(1, cpus)
    if quota != "max" and int(period) > 0:
        cpus = min(cpus, -(-int(quota) // int(period)))
    return max(1, cpus)


def whole_number(variable: Variable, least: int = 1) -> int:
    """A whole number from `variable` (or its default); one below `least` is refused by name."""
    value = variable.value()
    if not value.isdigit() or int(value) < least:
        raise ValueError(f"{variable.name}={value!r}: give a whole number, {least} or more")
    return int(value)


def threads(variable: Variable) -> int:
    """A thread count from `variable`, or the usable CPUs when it is unset; a value that is not
    a positive whole number is refused by name."""
    if not variable.is_set():
        return usable_cpus()
    value = variable.value()
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{variable.name}={value!r}: give a whole number of threads, 1 or more")
    return int(value)


VARIABLES = (
    HOME,
    DAGSTER_HOME,
    EXECUTOR,
    WORKERS,
    CELERY_BROKER,
    CELERY_BACKEND,
    TIMEZONE,
    TRAINING_DEBOUNCE,
    TRIAL_STALE_SECONDS,
    SENSOR_INTERVAL,
    QUERY_DB_URL,
    OPTUNA_URL,
    MLFLOW_TRACKING_URI,
    DAGSTER_PG_URL,
    MLFLOW_DB_URL,
    ENCODER_CACHE,
    BASE_CACHE,
    TEACHER_URL,
    TEACHER_MODEL,
    TEACHER_API_KEY,
    TEACHER_SECONDS,
    ALERT_URLS,
    SPOOL_DIR,
    DAGSTER_URL,
    SERVER_THREADS,
    ORT_THREADS,
    MAX_BODY_BYTES,
    MAX_WAITING,
    RATE_LIMIT,
    MAX_WORK_TOKENS,
    DB_TIMEOUT_SECONDS,
)
