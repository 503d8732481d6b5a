"""What a model server holds while it runs, opened together and closed together: the model
pool and its watcher, the query-log writer, retrieval, the reward models, API B, the key and
split caches, the worker threads, the shared instruct base and the metrics. The HTTP app
opens one in its lifespan; `thunder generate` and `thunder classify` open one to answer
exactly as the server does."""

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from thunder_dagster import settings as environment
from thunder_dagster.home import Home
from thunder_dagster.serving.access import KeyCache
from thunder_dagster.serving.adapters import AgentAdapters
from thunder_dagster.serving.api.admission import RateLimiter, WorkQueue
from thunder_dagster.serving.bases import SharedBase
from thunder_dagster.serving.errors import StoreUnavailable
from thunder_dagster.serving.metrics import ServerMetrics, StateCollector
from thunder_dagster.serving.models import ModelPool
from thunder_dagster.serving.querylog import QueryLogWriter
from thunder_dagster.serving.retrieval import Retrieval
from thunder_dagster.serving.rewards import RewardModels
from thunder_dagster.serving.splits import SplitCache

if TYPE_CHECKING:
    from thunder_dagster.serving.teacher import ExternalTeacher, TeacherSettings

# What the API document promises; a server may be configured tighter (ServerSettings).
HARD_PROMPT_LIMIT = 4000
HARD_TOKEN_LIMIT = 1024
HARD_QUERY_LIMIT = 4000
MAX_RESULTS = 100
MAX_BEST_OF = 8  # candidates one request may ask the reward model to rank


def _threads() -> int:
    return environment.threads(environment.SERVER_THREADS)


@dataclass(frozen=True)
class ServerSettings:
    deployments_root: Path
    query_db_url: str
    # Answers and ratings the store cannot take wait here; None: the home's spool folder.
    spool_dir: Path | None = None
    store_retry_seconds: float = 2.0  # how often a store that is down is tried again
    challenger_share: float = 0.2
    teacher_threshold: float = 0.5
    max_prompt_chars: int = HARD_PROMPT_LIMIT
    max_tokens: int = HARD_TOKEN_LIMIT
    reload_seconds: float = 0.5
    cache_ttl_seconds: int = 3600
    # The agents' retrieval indexes and the query encoder's graphs; None: the home's.
    retrieval_root: Path | None = None
    encoder_cache_dir: Path | None = None
    grounding_passages: int = 3
    # Requests answered at once: THUNDER_SERVER_THREADS, else the CPUs this process may use.
    workers: int = field(default_factory=_threads)
    # "keys": every /v1 request needs an API key (`thunder keys create`); "open": none does,
    # for local use on loopback (`thunder serve` refuses any other address without keys).
    auth: Literal["open", "keys"] = "open"
    key_refresh_seconds: float = 5.0
    # How often each agent's A/B split is read again from its A/B test in the store.
    split_refresh_seconds: float = 5.0
    # The Dagster webserver the admin API starts and cancels runs through; None: not offered.
    dagster_url: str | None = None
    # API B: the external teacher of agents without a local one; None: no external teacher.
    teacher: "TeacherSettings | None" = None
    # best_of: the time the candidates after the first may take in all, in seconds.
    best_of_seconds: float = 2.0
    # The agents whose models and indexes are loaded; None: every agent deployed (a command
    # answering for one agent loads that one's only).
    agents: frozenset[str] | None = None
    # Bounds on a request's cost (serving/api/admission.py): a body over max_body_bytes gets
    # 413; past `workers` answering and max_waiting waiting, 503; over rate_per_minute per
    # key (or client address when open), 429 (0: no limit); best_of x max_tokens over
    # max_work_tokens, 422.
    # The Host names an open server answers (`thunder serve`: loopback's and the address it
    # listens on), so a web page's DNS rebinding cannot reach it from a browser; None: any
    # (the app embedded in a process of its own, or a server with keys).
    open_hosts: frozenset[str] | None = None
    max_body_bytes: int = 1_048_576
    max_waiting: int = 32
    rate_per_minute: int = 0
    max_work_tokens: int = 4096

    @property
    def home(self) -> Home:
        """The state root the deployments belong to: its models, retrieval and spool folders."""
        return Home(self.deployments_root.parent)

    @property
    def spool(self) -> Path:
        return self.spool_dir or self.home.root / "spool"

    @property
    def retrieval(self) -> Path:
        return self.retrieval_root or self.home.root / "retrieval"

    @property
    def encoder_cache(self) -> Path:
        return self.encoder_cache_dir or self.home.encoder_cache_dir


@dataclass
class ServingState:
    """The open components; `close()` stops them in the reverse order."""

    settings: ServerSettings
    metrics: ServerMetrics
    pool: ModelPool
    writer: QueryLogWriter
    retrieval: Retrieval
    rewards: RewardModels
    teacher: "ExternalTeacher | None"
    keys: KeyCache
    splits: SplitCache
    workers: ThreadPoolExecutor
    base: SharedBase
    adapters: AgentAdapters
    queue: WorkQueue
    limiter: RateLimiter

    @classmethod
    def open(cls, settings: ServerSettings, metrics: ServerMetrics | None = None) -> "ServingState":
        """Start every component; the writer opens the store in its thread meanwhile."""
        metrics = metrics or ServerMetrics()
        writer = QueryLogWriter(settings.query_db_url, settings.spool, settings.store_retry_seconds)
        reloaded = metrics.reloads.labels
        pool = ModelPool(
            settings.deployments_root,
            settings.reload_seconds,
            on_load=lambda agent, role, outcome: reloaded(agent, role, outcome).inc(),
            only=settings.agents,
        )
        pool.start()
        retrieval = Retrieval.start(
            settings.retrieval,
            settings.encoder_cache,
            settings.reload_seconds,
            on_load=lambda agent, outcome: reloaded(agent, "index", outcome).inc(),
            only=settings.agents,
        )
        metrics.watch(
            lambda: set(pool.agents) | set(retrieval.agents()),
            StateCollector(
                lambda: {name: m.versions() for name, m in list(pool.agents.items())}, writer
            ),
        )
        teacher = None
        if settings.teacher is not None:
            from thunder_dagster.serving.teacher import ExternalTeacher

            teacher = ExternalTeacher(settings.teacher)
        # Generation runs on one thread per usable CPU, first come first served, so the event
        # loop stays free to read requests: a pool of 40 threads would have them all fight
        # over the GIL and the cores.
        workers = ThreadPoolExecutor(settings.workers, thread_name_prefix="generate")
        return cls(
            settings=settings,
            metrics=metrics,
            pool=pool,
            writer=writer,
            retrieval=retrieval,
            rewards=RewardModels(settings.deployments_root, retrieval.encoder_version),
            teacher=teacher,
            keys=KeyCache(writer.store, settings.key_refresh_seconds),
            splits=SplitCache(
                writer.store, settings.challenger_share, settings.split_refresh_seconds
            ),
            workers=workers,
            base=SharedBase(settings.home.bases_dir),
            adapters=AgentAdapters(settings.deployments_root),
            queue=WorkQueue(workers, settings.workers, settings.max_waiting),
            limiter=RateLimiter(settings.rate_per_minute),
        )

    def close(self) -> None:
        self.workers.shutdown(wait=True)
        self.retrieval.stop()
        self.pool.stop()
        self.writer.close()

    def open_store(self):
        """The query-log store, or StoreUnavailable while it is not open."""
        store = self.writer.store()
        if store is None:
            raise StoreUnavailable("the query-log store is unavailable; try again")
        return store
