"""The model server: FastAPI over onnxruntime sessions. Imports neither Dagster nor TensorFlow.

    thunder serve [--host 127.0.0.1] [--port 8000]

GET /healthz, GET /metrics (Prometheus), POST /v1/agents/{agent_id}/generate,
POST /v1/agents/{agent_id}/search, POST /v1/feedback. Answers come from the champion, or from
the challenger for the A/B share of users; when the answer's confidence is under the
threshold and the agent has a teacher, the teacher answers and the log says so. A grounded
answer ("grounding": "retrieved") is conditioned on the agent's best passages, which it
lists, and the log keeps their chunk ids.
"""

import asyncio
import contextlib
import dataclasses
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as FastApiPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, field_validator

from thunder_dagster.feedback.records import QueryRecord, UnknownQueryError, cache_key
from thunder_dagster.home import AGENT_ID_PATTERN
from thunder_dagster.serving.abtests import (
    AbTestId,
    AbTestItem,
    AbTestRequest,
    AbTestResults,
    StopRequest,
    ab_test_item,
    ab_test_results,
)
from thunder_dagster.serving.access import KeyCache
from thunder_dagster.serving.generation import LoadedModel, generate
from thunder_dagster.serving.metrics import ServerMetrics, StateCollector
from thunder_dagster.serving.models import AgentModels, ModelPool, variant_for
from thunder_dagster.serving.querylog import QueryLogWriter
from thunder_dagster.serving.retrieval import Retrieval
from thunder_dagster.serving.rewards import RewardModels
from thunder_dagster.serving.splits import SplitCache
from thunder_dagster.tasks import LABEL_TASKS

if TYPE_CHECKING:
    from thunder_dagster.access.keys import Identity
    from thunder_dagster.serving.teacher import TeacherSettings

# What the API document promises; a server may be configured tighter (ServerSettings).
HARD_PROMPT_LIMIT = 4000
HARD_TOKEN_LIMIT = 1024
HARD_QUERY_LIMIT = 4000
MAX_RESULTS = 100
MAX_BEST_OF = 8  # candidates one request may ask the reward model to rank


@dataclass(frozen=True)
class ServerSettings:
    deployments_root: Path
    query_db_url: str
    # Answers and ratings the store cannot take wait here; None: beside the deployments.
    spool_dir: Path | None = None
    store_retry_seconds: float = 2.0  # how often a store that is down is tried again
    challenger_share: float = 0.2
    teacher_threshold: float = 0.5
    max_prompt_chars: int = HARD_PROMPT_LIMIT
    max_tokens: int = HARD_TOKEN_LIMIT
    reload_seconds: float = 0.5
    cache_ttl_seconds: int = 3600
    # The agents' retrieval indexes; None: beside the deployments. The query encoder's graph
    # is written under encoder_cache_dir (None: THUNDER_HOME's encoder cache beside them).
    retrieval_root: Path | None = None
    encoder_cache_dir: Path | None = None
    grounding_passages: int = 3
    workers: int = os.cpu_count() or 2
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


class Problem(BaseModel):
    detail: str = Field(description="what went wrong and what to do")


# FastAPI's own answer to a body it cannot decode (not UTF-8, not JSON at all).
UNREADABLE_BODY = {"model": Problem, "description": "the body cannot be read as JSON"}
# What a server with keys answers a request without the right one.
KEYED = {
    401: {"model": Problem, "description": "no API key, or one that is not valid"},
    403: {"model": Problem, "description": "the key lacks the scope or the agent"},
}
# Declares the Bearer scheme in the API document; the check itself is KeyCache's.
BEARER = HTTPBearer(auto_error=False, description="an API key: `thunder keys create`")


def no_credentials() -> None:
    """An open server's stand-in for BEARER: its document declares no scheme it ignores."""


class FeedbackResponse(BaseModel):
    query_id: str
    score: int
    stored: bool = Field(
        description="true: in the query log; false: in the server's spool, written to the log "
        "when its store is back (a rating of an id no answer has is then dropped)"
    )


def field_error(field: str, message: str) -> RequestValidationError:
    """A 422 for a value the schema allows but this server's settings do not."""
    return RequestValidationError([{"loc": ("body", field), "msg": message, "type": "value_error"}])


class GenerateRequest(BaseModel):
    # JSON as Python reads it allows NaN and Infinity; no field here means anything by them.
    model_config = ConfigDict(allow_inf_nan=False)

    prompt: str = Field(max_length=HARD_PROMPT_LIMIT, description="the text to continue")
    max_tokens: int = Field(
        default=128, ge=1, le=HARD_TOKEN_LIMIT, description="characters to generate"
    )
    temperature: float = Field(default=0.8, ge=0.0, le=5.0, description="0 is greedy")
    user_id: str = Field(
        min_length=1,
        max_length=128,
        description="decides the A/B variant; with API keys, only a key trusted to name its "
        "users (a product's backend) sets it, and otherwise the key is the user",
    )
    grounding: Literal["none", "retrieved"] = Field(
        default="none",
        description="retrieved: the agent's best passages for the prompt are fed through the "
        "model before it, and the answer lists them",
    )
    best_of: int | None = Field(
        default=None,
        ge=1,
        le=MAX_BEST_OF,
        description="sample this many answers and return the one the agent's reward model "
        "ranks highest (within the server's latency budget for the extra ones; at temperature "
        "0 every sample is the same, so one is made); empty: the agent's adopted best-of-n "
        "(an A/B test promoted it), else 1",
    )


class Source(BaseModel):
    chunk_id: str
    document_id: str
    filename: str


class GenerateResponse(BaseModel):
    text: str
    confidence: float | None = Field(
        description="the mean probability the answering model gave its characters (tokens, for "
        "an external teacher; null when it reports none)"
    )
    model_version: str = Field(description="the local version, or api-b:MODEL for API B")
    variant: str
    query_id: str
    fallback: bool
    sources: list[Source] = Field(default_factory=list, description="grounded answers only")
    teacher_error: str | None = Field(
        default=None,
        description="why the external teacher, asked because the local model was unsure, could "
        "not answer: the local answer is returned instead",
    )
    candidates: int = Field(default=1, description="answers sampled and ranked (best_of)")
    reward: float | None = Field(
        default=None, description="the reward model's 1-5 score of the answer, when ranked"
    )
    best_of_error: str | None = Field(
        default=None, description="why fewer answers than best_of were ranked, if they were"
    )


class SearchRequest(BaseModel):
    query: str = Field(min_length=1, max_length=HARD_QUERY_LIMIT, description="what to find")
    k: int = Field(default=5, ge=1, le=MAX_RESULTS, description="how many chunks to return")

    @field_validator("query")
    @classmethod
    def not_blank(cls, query: str) -> str:
        if not query.strip():
            raise ValueError("the query is blank: send some words to search for")
        return query


class SearchHit(BaseModel):
    chunk_id: str
    document_id: str
    category: str
    filename: str
    start: int
    end: int
    text: str
    score: float = Field(
        description="BM25's standardised score plus the vectors', weighted as the index "
        "fitted; higher is better"
    )
    found_by: Literal["bm25", "vector", "both"]


class SearchResponse(BaseModel):
    agent_id: str
    index_version: str
    results: list[SearchHit]


class ClassifyRequest(BaseModel):
    text: str = Field(min_length=1, max_length=HARD_QUERY_LIMIT, description="the text to label")

    @field_validator("text")
    @classmethod
    def not_blank(cls, text: str) -> str:
        if not text.strip():
            raise ValueError("the text is blank: send the text to classify")
        return text


class ClassifyResponse(BaseModel):
    label: str = Field(description="the most probable label")
    probabilities: dict[str, float] = Field(description="every label's probability")
    model_version: str
    task: Literal["classification", "sentiment"]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    query_id: str = Field(min_length=1, max_length=64)
    score: int = Field(ge=1, le=5, description="1 (bad) to 5 (good); 4 and 5 count as positive")
    comment: str | None = Field(default=None, max_length=4000)


class RoleStatus(BaseModel):
    version: str
    family: str
    deployed_at: str = Field(description="UTC, ISO 8601: when this role was pointed at it")
    test_loss: float | None = Field(description="nats per character on its test split")
    checks: dict[str, bool] = Field(description="the export's checks and whether each passed")


class AgentDeployment(BaseModel):
    agent_id: str
    roles: dict[str, RoleStatus | None]
    refused: dict[str, str] = Field(description="role -> why its candidate was refused")
    undeployed: str | None = Field(
        default=None, description="since when, by whom and why it is not served, if it is not"
    )


class VersionItem(BaseModel):
    version: str
    family: str | None
    params: dict
    test_loss: float | None
    parent_version: str | None
    change: str | None = Field(description="retrain, fine_tune or distillation")
    created_at: str | None
    roles: list[str]
    deployed_at: str | None
    problem: str | None = Field(description="why its card could not be read, if it could not")


class TrainingRequest(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    minutes: float = Field(ge=0.2, le=600, description="the whole run's budget, as `--minutes`")
    trials: int | None = Field(default=None, ge=1, le=500, description="search trials at most")


VERSION = r"^\d+\.\d+\.\d+$"


class RollbackRequest(BaseModel):
    to_version: str | None = Field(
        default=None,
        pattern=VERSION,
        description="an earlier champion's version; empty: the one before the current",
    )


class ComparisonRequest(BaseModel):
    version_a: str = Field(pattern=VERSION, description="a released version, e.g. the champion")
    version_b: str = Field(pattern=VERSION, description="the version to compare with it")
    prompts: int = Field(default=8, ge=1, le=64, description="prompts cut from the test text")
    seed: int = Field(default=0, ge=0, le=2**31 - 1, description="the sampling's seed, for both")


class UndeployRequest(BaseModel):
    reason: str = Field(
        default="undeployed by an operator", min_length=1, max_length=500, description="why"
    )


class RunItem(BaseModel):
    run_id: str
    status: str = Field(description="Dagster's run status: QUEUED, STARTED, SUCCESS, ...")


RunId = Annotated[str, FastApiPath(pattern=r"^[0-9a-f-]{8,64}$", description="a Dagster run id")]


class AuditItem(BaseModel):
    id: int
    at: str = Field(description="UTC, ISO 8601")
    actor: str
    action: str
    target: str
    request_id: str
    outcome: str
    detail: str | None


def create_app(settings: ServerSettings) -> FastAPI:
    metrics = ServerMetrics()
    # With keys, the document declares the Bearer scheme and the 401 and 403 answers; an open
    # server's declares neither, since it answers neither.
    keyed = KEYED if settings.auth == "keys" else {}
    Credentials = Annotated[
        HTTPAuthorizationCredentials | None,
        Depends(BEARER if settings.auth == "keys" else no_credentials),
    ]

    @asynccontextmanager
    async def lifespan(served: FastAPI):
        # The writer opens the store in its thread while the models load here.
        spool_dir = settings.spool_dir or settings.deployments_root.parent / "spool"
        writer = QueryLogWriter(settings.query_db_url, spool_dir, settings.store_retry_seconds)
        reloaded = metrics.reloads.labels
        pool = ModelPool(
            settings.deployments_root,
            settings.reload_seconds,
            on_load=lambda agent, role, outcome: reloaded(agent, role, outcome).inc(),
        )
        pool.start()
        retrieval = Retrieval.start(
            settings.retrieval_root or settings.deployments_root.parent / "retrieval",
            settings.encoder_cache_dir or settings.deployments_root.parent / "cache" / "encoders",
            settings.reload_seconds,
            on_load=lambda agent, outcome: reloaded(agent, "index", outcome).inc(),
        )
        metrics.watch(
            lambda: set(pool.agents) | set(retrieval.agents()),
            StateCollector(
                lambda: {name: m.versions() for name, m in list(pool.agents.items())}, writer
            ),
        )
        workers = ThreadPoolExecutor(settings.workers, thread_name_prefix="generate")
        # On app.state, where an operator's tooling (and the tests) can reach them.
        served.state.pool, served.state.writer, served.state.workers = pool, writer, workers
        served.state.retrieval = retrieval
        served.state.rewards = RewardModels(settings.deployments_root, retrieval.encoder_version)
        served.state.teacher = None
        if settings.teacher is not None:
            from thunder_dagster.serving.teacher import ExternalTeacher

            served.state.teacher = ExternalTeacher(settings.teacher)
        served.state.keys = KeyCache(writer.store, settings.key_refresh_seconds)
        served.state.splits = SplitCache(
            writer.store, settings.challenger_share, settings.split_refresh_seconds
        )
        yield
        workers.shutdown(wait=True)
        retrieval.stop()
        pool.stop()
        writer.close()

    app = FastAPI(title="thunder-dagster model server", lifespan=lifespan)

    @app.middleware("http")
    async def measured(request: Request, call_next):
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        agent = metrics.agent_label(request.path_params.get("agent_id"))
        metrics.requests.labels(endpoint, agent, str(response.status_code)).inc()
        metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - started)
        return response

    @app.get("/metrics", include_in_schema=False)
    def prometheus() -> Response:
        """What Prometheus scrapes: the server's metrics in its text format."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        """A 422 naming each bad field. FastAPI's own handler echoes the input back, and an
        input of NaN, which JSON cannot carry, turned the 422 into a 500."""
        details = [
            {"loc": list(problem["loc"]), "msg": problem["msg"], "type": problem["type"]}
            for problem in error.errors()
        ]
        return JSONResponse({"detail": details}, status_code=422)

    def caller(request: Request, scope: str, agent_id: str | None = None) -> "Identity | None":
        """The request's key identity when the server has keys (or the 401, 403 or 503 that
        says why not); None on an open server."""
        if settings.auth == "open":
            return None
        return app.state.keys.identity(request, scope, agent_id)

    def user_of(identity: "Identity | None", claimed: str) -> str:
        """Who the answer is for: the caller's claim on an open server or from a key trusted
        to name its users; otherwise the key itself."""
        if identity is None:
            return claimed
        return f"{identity.key_id}:{claimed}" if identity.trusts_user_ids else identity.key_id

    def refuse_undeployed(agent_id: str) -> None:
        undeployed = app.state.pool.undeployed.get(agent_id)
        if undeployed is not None:
            raise HTTPException(
                404,
                f"agent {agent_id!r} is undeployed (since {undeployed.at}: {undeployed.reason}); "
                "an operator serves it again with `thunder redeploy`",
            )

    def models_of(agent_id: str) -> AgentModels:
        models = app.state.pool.get(agent_id) if AGENT_ID_PATTERN.fullmatch(agent_id) else None
        refuse_undeployed(agent_id)
        if models is None or models.champion is None:
            known = sorted(
                name for name, m in app.state.pool.agents.items() if m.champion is not None
            )
            raise HTTPException(
                404,
                f"unknown agent {agent_id!r}: no deployed model; agents served: "
                f"{', '.join(known) or 'none'}",
            )
        return models

    @app.get("/livez")
    def livez() -> dict:
        """The process answers: what a liveness probe asks (no store, no model involved)."""
        return {"status": "alive"}

    @app.get("/healthz", responses={503: {"description": "deployed agents, none can answer"}})
    def healthz() -> JSONResponse:
        """ok, or degraded with each problem and the agent it concerns (no file paths). 503 only
        when agents are deployed and none of them can answer: then a load balancer should send
        its traffic elsewhere; a stale watcher or an unwritable log still answers, with 200."""
        pool: ModelPool = app.state.pool
        agents = {name: models.versions() for name, models in sorted(pool.agents.items())}
        problems = []
        if not pool.watching:
            problems.append(
                {
                    "reason": "the pointer watcher has stopped: new deployments are not loaded; "
                    "restart the server"
                }
            )
        elif pool.look_error:
            problems.append({"reason": f"the last look at the pointers failed: {pool.look_error}"})
        logging_problem = app.state.writer.problem()
        if logging_problem:
            problems.append({"reason": logging_problem})
        for name, models in sorted(pool.agents.items()):
            if models.champion is None:
                why = models.refused.get("champion", "no champion is deployed")
                problems.append({"agent": name, "reason": f"no loadable champion: {why}"})
            for role, why in sorted(models.refused.items()):
                if role != "champion" or models.champion is not None:
                    problems.append({"agent": name, "reason": f"{role} refused: {why}"})
        problems += app.state.retrieval.problems()
        problems += app.state.rewards.problems()
        teacher = app.state.teacher
        if teacher is not None and teacher.breaker.state() != "closed":
            problems.append(
                {
                    "reason": f"API B's circuit is {teacher.breaker.state()} after failures; "
                    f"unsure answers stay local for {teacher.breaker.reopens_in():.0f} s more"
                }
            )
        answering = any(models.champion is not None for models in pool.agents.values())
        status = 503 if pool.agents and not answering else 200
        body = {
            "status": "degraded" if problems else "ok",
            "agents": agents,
            "problems": problems,
            "undeployed": sorted(pool.undeployed),
        }
        return JSONResponse(body, status_code=status)

    @app.post(
        "/v1/agents/{agent_id}/generate",
        response_model=GenerateResponse,
        responses={
            400: UNREADABLE_BODY,
            **keyed,
            404: {"model": Problem, "description": "no model deployed for the agent"},
            409: {"model": Problem, "description": "the agent is a classifier: use classify"},
        },
    )
    async def generate_text(
        agent_id: str,
        request: GenerateRequest,
        http: Request,
        _bearer: Credentials = None,
    ) -> GenerateResponse:
        user = user_of(caller(http, "generate", agent_id), request.user_id)
        # Generation runs on a pool of one thread per core, first come first served, so the
        # event loop stays free to read requests: the default pool of 40 threads would have
        # them all fight over the GIL and the cores.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            app.state.workers, answer_request, agent_id, request, user
        )

    def answer_request(agent_id: str, request: GenerateRequest, user: str) -> GenerateResponse:
        started = time.perf_counter()
        if len(request.prompt) > settings.max_prompt_chars:
            raise field_error(
                "prompt",
                f"{len(request.prompt)} characters, the limit is {settings.max_prompt_chars}; "
                "send a shorter prompt",
            )
        if request.max_tokens > settings.max_tokens:
            raise field_error(
                "max_tokens", f"{request.max_tokens}, the limit is {settings.max_tokens}"
            )
        models = models_of(agent_id)
        if models.champion.task in LABEL_TASKS:
            raise HTTPException(
                409,
                f"agent {agent_id!r} is a {models.champion.task} agent (labels: "
                f"{', '.join(models.champion.labels)}): it answers "
                f"POST /v1/agents/{agent_id}/classify, not generate",
            )
        challenger = models.challenger
        champion_version = models.champion.deployment.version
        # Without a challenger model, the challenger may be a serving policy: the champion
        # answering best-of-n, in a running A/B test.
        policy = None if challenger else app.state.splits.best_of_test(agent_id, champion_version)
        if policy is not None:
            share = policy[2]
        else:
            share = (
                app.state.splits.share(agent_id, challenger.deployment.version) if challenger else 0
            )
        variant = variant_for(agent_id, user, share)
        model: LoadedModel = models.challenger if variant == "challenger" else models.champion
        if model is None:
            model = models.champion
            variant = "challenger" if policy is not None and variant == "challenger" else "champion"
        best_of = request.best_of or app.state.rewards.default_best_of(agent_id)
        if policy is not None and variant == "challenger":
            best_of = policy[1]
        fallback, teacher_confidence = False, None
        sources: list = []
        if request.grounding == "retrieved":
            _, hits = searched(agent_id, request.prompt, settings.grounding_passages)
            sources = [hit.chunk for hit in hits]
        generating = time.perf_counter()
        if best_of > 1:
            text, confidence, ranked = best_answer(agent_id, model, request, sources, best_of)
        else:
            (text, confidence), ranked = answer(model, request, sources), Ranked()
        metrics.model_seconds.labels(agent_id, variant).observe(time.perf_counter() - generating)
        metrics.confidence.labels(agent_id, variant).observe(confidence)
        metrics.characters.labels(agent_id, variant).inc(len(text))
        # The log keeps the local model's confidence, the daily rules' input, also when the
        # teacher answers; the teacher's goes in its own column (distillation selects by it).
        local_confidence = confidence
        answered_by = policy[0] if policy and variant == "challenger" else model.deployment.version
        teacher_error = None
        if confidence < settings.teacher_threshold and models.teacher is not None:
            model, fallback = models.teacher, True
            text, confidence = answer(model, request, sources)
            metrics.fallbacks.labels(agent_id).inc()
            teacher_confidence, answered_by = confidence, model.deployment.version
        elif confidence < settings.teacher_threshold and app.state.teacher is not None:
            taught, teacher_error = external_answer(request, sources)
            if taught is not None:
                text, fallback = taught.text[: request.max_tokens], True
                teacher_confidence, answered_by = taught.confidence, taught.model_version
                confidence = taught.confidence
                metrics.fallbacks.labels(agent_id).inc()
        latency_ms = (time.perf_counter() - started) * 1000
        query_id = app.state.writer.submit(
            QueryRecord(
                agent_id=agent_id,
                user_id=user,
                variant=variant,
                model_version=answered_by,
                prompt=request.prompt,
                response=text,
                confidence=local_confidence,
                fallback=fallback,
                latency_ms=latency_ms,
                teacher_confidence=teacher_confidence,
                sources=[chunk.chunk_id for chunk in sources] if sources else None,
            )
        )
        return GenerateResponse(
            text=text,
            confidence=confidence,
            model_version=answered_by,
            variant=variant,
            query_id=query_id,
            fallback=fallback,
            teacher_error=teacher_error,
            candidates=ranked.candidates,
            reward=ranked.reward,
            best_of_error=ranked.error,
            sources=[
                Source(chunk_id=c.chunk_id, document_id=c.document_id, filename=c.filename)
                for c in sources
            ],
        )

    def best_answer(agent_id: str, model, request: GenerateRequest, passages, wanted: int):
        """(text, confidence, Ranked): up to `wanted` sampled answers, the first always and the
        others while the latency budget lasts, and the one the reward model scores highest.
        Without a reward model, or at temperature 0, one answer and the reason."""
        from thunder_dagster.retrieval.encoder import EncoderUnavailableError
        from thunder_dagster.serving.rewards import RewardUnavailableError

        if request.temperature == 0:
            text, confidence = answer(model, request, passages)
            return text, confidence, Ranked(error="at temperature 0 every sample is the same")
        try:
            reward = app.state.rewards.get(agent_id)
        except RewardUnavailableError as error:
            text, confidence = answer(model, request, passages)
            return text, confidence, Ranked(error=str(error))
        context = "".join(f"{chunk.text}\n\n" for chunk in reversed(list(passages)))
        started = time.perf_counter()
        drawn = []
        while len(drawn) < wanted:
            if drawn and time.perf_counter() - started > settings.best_of_seconds:
                break
            drawn.append(
                generate(
                    model, request.prompt, request.max_tokens, request.temperature, context=context
                )
            )
        try:
            vectors = app.state.retrieval.encode_many([request.prompt, *(g.text for g in drawn)])
        except EncoderUnavailableError as error:
            return drawn[0].text, drawn[0].confidence, Ranked(error=str(error))
        scores = reward.scores(vectors[0], vectors[1:])
        best = max(range(len(drawn)), key=lambda number: scores[number])
        short = (
            f"{len(drawn)} of {wanted} answers within the {settings.best_of_seconds:g} s budget"
            if len(drawn) < wanted
            else None
        )
        ranked = Ranked(candidates=len(drawn), reward=float(scores[best]), error=short)
        return drawn[best].text, drawn[best].confidence, ranked

    def external_answer(request: GenerateRequest, passages) -> tuple:
        """API B's answer and None, or None and why it could not answer (the local answer then
        stands). Grounded requests give it the passages as context, best first."""
        from thunder_dagster.serving.teacher import CircuitOpenError, TeacherUnavailableError

        prompt = request.prompt
        if passages:
            context = "\n\n".join(chunk.text for chunk in passages)
            prompt = f"Passages:\n{context}\n\nText to continue:\n{request.prompt}"
        try:
            taught = app.state.teacher.answer(prompt, request.max_tokens, request.temperature)
        except TeacherUnavailableError as error:
            outcome = "circuit_open" if isinstance(error, CircuitOpenError) else "failed"
            metrics.teacher_calls.labels(outcome).inc()
            return None, str(error)
        metrics.teacher_calls.labels("answered").inc()
        return taught, None

    def searched(agent_id: str, query: str, k: int) -> tuple:
        """The agent's index and its top `k` hits for `query`; a 404 that says why when the
        agent has no index to search."""
        refuse_undeployed(agent_id)
        retrieval: Retrieval = app.state.retrieval
        index = retrieval.index(agent_id) if AGENT_ID_PATTERN.fullmatch(agent_id) else None
        if index is None:
            raise HTTPException(
                404, f"agent {agent_id!r} has no retrieval index: {retrieval.why_not(agent_id)}"
            )
        started = time.perf_counter()
        hits = index.search(query, retrieval.encode(query), k)
        metrics.search_seconds.labels(agent_id).observe(time.perf_counter() - started)
        return index, hits

    def answer(model: LoadedModel, request: GenerateRequest, passages=()) -> tuple[str, float]:
        """Greedy answers are cached per model version and passages; sampled ones never are.
        Without the store (not open yet, or down) an answer is generated, not looked up. The
        passages go through the model before the prompt, best last, next to it."""
        store = app.state.writer.store() if request.temperature == 0 else None
        context = "".join(f"{chunk.text}\n\n" for chunk in reversed(list(passages)))
        grounded = [chunk.chunk_id for chunk in passages]
        prompt_key = f"{request.prompt}\0{request.max_tokens}\0{','.join(grounded)}"
        key = cache_key(model.deployment.agent_id, model.deployment.version, prompt_key)
        if store is not None:
            try:
                cached = store.cached_response(key)
            except Exception:  # the store went down: the cache is an optimisation only
                store, cached = None, None
            if cached is not None:
                return cached.response, cached.confidence
        generation = generate(
            model, request.prompt, request.max_tokens, request.temperature, context=context
        )
        if store is not None:
            with contextlib.suppress(Exception):
                store.cache_response(
                    model.deployment.agent_id,
                    model.deployment.version,
                    prompt_key,
                    generation.text,
                    generation.confidence,
                    timedelta(seconds=settings.cache_ttl_seconds),
                )
        return generation.text, generation.confidence

    @app.post(
        "/v1/agents/{agent_id}/classify",
        response_model=ClassifyResponse,
        responses={
            400: UNREADABLE_BODY,
            **keyed,
            404: {"model": Problem, "description": "no model deployed for the agent"},
            409: {"model": Problem, "description": "the agent is not a classifier"},
        },
    )
    async def classify_text(
        agent_id: str,
        request: ClassifyRequest,
        http: Request,
        _bearer: Credentials = None,
    ) -> ClassifyResponse:
        """The label a classification or sentiment agent's champion gives the text, with
        every label's probability."""
        caller(http, "generate", agent_id)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(app.state.workers, classify_request, agent_id, request)

    def classify_request(agent_id: str, request: ClassifyRequest) -> ClassifyResponse:
        from thunder_dagster.serving.classification import classify

        model = models_of(agent_id).champion
        if model.task not in LABEL_TASKS:
            raise HTTPException(
                409,
                f"agent {agent_id!r} is a {model.task} agent: it answers "
                f"POST /v1/agents/{agent_id}/generate; classify needs a classification or "
                "sentiment agent",
            )
        started = time.perf_counter()
        label, probabilities = classify(model, request.text)
        metrics.model_seconds.labels(agent_id, "champion").observe(time.perf_counter() - started)
        return ClassifyResponse(
            label=label,
            probabilities=probabilities,
            model_version=model.deployment.version,
            task=model.task,
        )

    @app.post(
        "/v1/agents/{agent_id}/search",
        response_model=SearchResponse,
        responses={
            400: UNREADABLE_BODY,
            **keyed,
            404: {"model": Problem, "description": "the agent has no retrieval index"},
        },
    )
    async def search(
        agent_id: str,
        request: SearchRequest,
        http: Request,
        _bearer: Credentials = None,
    ) -> SearchResponse:
        """The agent's chunks nearest the query: BM25 and vector search, fused."""
        caller(http, "generate", agent_id)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(app.state.workers, search_request, agent_id, request)

    def search_request(agent_id: str, request: SearchRequest) -> SearchResponse:
        index, hits = searched(agent_id, request.query, request.k)
        return SearchResponse(
            agent_id=agent_id,
            index_version=index.version,
            results=[
                SearchHit(
                    chunk_id=hit.chunk.chunk_id,
                    document_id=hit.chunk.document_id,
                    category=hit.chunk.category,
                    filename=hit.chunk.filename,
                    start=hit.chunk.start,
                    end=hit.chunk.end,
                    text=hit.chunk.text,
                    score=hit.score,
                    found_by=hit.found_by,
                )
                for hit in hits
            ],
        )

    @app.post(
        "/v1/feedback",
        response_model=FeedbackResponse,
        responses={
            400: UNREADABLE_BODY,
            **keyed,
            404: {"model": Problem, "description": "no answer has that query_id"},
            503: {"model": Problem, "description": "the query-log store is unavailable"},
        },
    )
    def feedback(
        request: FeedbackRequest,
        http: Request,
        _bearer: Credentials = None,
    ) -> FeedbackResponse:
        caller(http, "feedback")
        try:
            stored = app.state.writer.rate(request.query_id, request.score, request.comment)
        except UnknownQueryError:
            raise HTTPException(
                404,
                f"unknown query_id {request.query_id!r}: use the query_id a generate answer "
                "returned",
            ) from None
        except OSError as error:  # neither the store nor the spool can take it
            raise HTTPException(
                503,
                "feedback cannot be stored now: the query-log store and the spool are "
                "unavailable; try again",
            ) from error
        return FeedbackResponse(query_id=request.query_id, score=request.score, stored=stored)

    @app.get(
        "/v1/admin/audit",
        response_model=list[AuditItem],
        responses={
            **keyed,
            503: {"model": Problem, "description": "the query-log store is unavailable"},
        },
    )
    def audit(
        http: Request,
        limit: Annotated[int, Query(ge=1, le=1000, description="newest entries to return")] = 100,
        _bearer: Credentials = None,
    ) -> list[AuditItem]:
        """The audit log of admin actions, newest first (scope admin). Reading it is recorded
        too."""
        identity = caller(http, "admin")
        keys = admin_log()
        entries = keys.audit(limit)
        audited(keys, identity, http, "audit.read", "audit_log", f"returned {len(entries)}")
        return [AuditItem(**(dataclasses.asdict(e) | {"at": e.at.isoformat()})) for e in entries]

    def open_store():
        """The query-log store, or the 503 that says it is unavailable now."""
        store = app.state.writer.store()
        if store is None:
            raise HTTPException(503, "the query-log store is unavailable; try again")
        return store

    def admin_log():
        """The store's keys and audit log; a 503 while the store is unavailable (an admin
        action that cannot be recorded is not taken)."""
        from thunder_dagster.access.keys import KeyStore

        return KeyStore(open_store().engine)

    def ab_tests():
        from thunder_dagster.feedback.experiments import AbTestStore

        return AbTestStore(open_store().engine)

    def audited(
        keys, identity, http: Request, action: str, target: str, detail: str, outcome="ok"
    ) -> None:
        keys.record(
            identity.actor if identity else "open-server",
            action,
            target,
            http.headers.get("x-request-id", "") or new_request_id(),
            outcome,
            detail,
        )

    def remote(keys, identity, http: Request, action: str, target: str, call) -> RunItem:
        """A call to the Dagster webserver, audited whatever its outcome: 503 when it does not
        answer, 409 when Dagster refuses the request."""
        from thunder_dagster.serving.remote import RemoteError

        try:
            state = call(settings.dagster_url)
        except RemoteError as error:
            refused = "refused" in str(error)
            audited(keys, identity, http, action, target, str(error)[:500], "failed")
            raise HTTPException(409 if refused else 503, str(error)) from error
        audited(keys, identity, http, action, target, f"run {state.run_id}: {state.status}")
        return RunItem(run_id=state.run_id, status=state.status)

    # Offered only with a webserver to act through (THUNDER_DAGSTER_URL): without one the
    # document does not list them.
    if settings.dagster_url:

        @app.post(
            "/v1/admin/agents/{agent_id}/training",
            status_code=202,
            response_model=RunItem,
            responses={
                400: UNREADABLE_BODY,
                **keyed,
                404: {"model": Problem, "description": "no such agent"},
                409: {"model": Problem, "description": "Dagster refused the run"},
                503: {"model": Problem, "description": "no webserver, or no store, to act through"},
            },
        )
        def start_training(
            agent_id: str, request: TrainingRequest, http: Request, _bearer: Credentials = None
        ) -> RunItem:
            """Start pipeline_job for the agent (ingest, search, training, export, deployment)
            with `minutes` for the whole run, through the Dagster webserver: the UI shows it."""
            identity = caller(http, "admin", agent_id)
            if not AGENT_ID_PATTERN.fullmatch(agent_id):
                raise HTTPException(404, f"unknown agent {agent_id!r}")
            keys = admin_log()

            def call(url):
                from thunder_dagster.serving.remote import start_training as start

                return start(url, agent_id, request.minutes, request.trials)

            return remote(keys, identity, http, "training.start", f"agent:{agent_id}", call)

        @app.get(
            "/v1/admin/runs/{run_id}",
            response_model=RunItem,
            responses={
                **keyed,
                409: {"model": Problem, "description": "Dagster has no such run"},
                503: {"model": Problem, "description": "no webserver, or no store, to act through"},
            },
        )
        def run_state(run_id: RunId, http: Request, _bearer: Credentials = None) -> RunItem:
            """A run's status as Dagster reports it (QUEUED, STARTED, SUCCESS, CANCELED, ...)."""
            identity = caller(http, "admin")
            keys = admin_log()

            def call(url):
                from thunder_dagster.serving.remote import run_status

                return run_status(url, run_id)

            return remote(keys, identity, http, "run.read", f"run:{run_id}", call)

        @app.post(
            "/v1/admin/runs/{run_id}/cancel",
            response_model=RunItem,
            responses={
                **keyed,
                409: {"model": Problem, "description": "Dagster refused to cancel the run"},
                503: {"model": Problem, "description": "no webserver, or no store, to act through"},
            },
        )
        def cancel(
            run_id: RunId,
            http: Request,
            force: Annotated[
                bool,
                Query(
                    description="mark it CANCELED now and kill its process, as the UI's force "
                    "termination does (for a run that stays CANCELING)"
                ),
            ] = False,
            _bearer: Credentials = None,
        ) -> RunItem:
            """Cancel a run: Dagster asks it to stop and marks it CANCELED when it has."""
            identity = caller(http, "admin")
            keys = admin_log()

            def call(url):
                from thunder_dagster.serving.remote import cancel_run

                return cancel_run(url, run_id, force)

            action = "run.force_cancel" if force else "run.cancel"
            return remote(keys, identity, http, action, f"run:{run_id}", call)

        def deployment_job(
            agent_id: str,
            http: Request,
            action: str,
            job: str,
            op: str,
            config: dict,
            partitioned: bool = False,
        ) -> RunItem:
            """A run of one of the deployment jobs for the agent through the webserver, so the
            pointer and the MLflow alias move together, as the UI and the CLI move them."""
            identity = caller(http, "admin", agent_id)
            if (
                not AGENT_ID_PATTERN.fullmatch(agent_id)
                or not (settings.deployments_root / agent_id).is_dir()
            ):
                raise HTTPException(404, f"unknown agent {agent_id!r}: nothing was deployed for it")
            keys = admin_log()
            if not partitioned:
                config = {"agent_id": agent_id, **config}

            def call(url):
                from thunder_dagster.serving.remote import start_op_job

                return start_op_job(url, job, op, config, agent_id, partitioned)

            return remote(keys, identity, http, action, f"agent:{agent_id}", call)

        admin_run = {
            "status_code": 202,
            "response_model": RunItem,
            "responses": {
                400: UNREADABLE_BODY,
                **keyed,
                404: {"model": Problem, "description": "no such agent"},
                409: {
                    "model": Problem,
                    "description": "Dagster refused the run (or a comparison names one version "
                    "twice)",
                },
                503: {"model": Problem, "description": "no webserver, or no store, to act through"},
            },
        }

        @app.post("/v1/admin/agents/{agent_id}/rollback", **admin_run)
        def roll_back(
            agent_id: str, request: RollbackRequest, http: Request, _bearer: Credentials = None
        ) -> RunItem:
            """Start rollback_job: the champion back one version, or to `to_version`. The run
            fails, and nothing moves, when that version is not an earlier champion or its
            files are gone; every server serves the new champion within its reload interval."""
            config = {"to_version": request.to_version}
            return deployment_job(
                agent_id, http, "agent.rollback", "rollback_job", "roll_back_champion", config
            )

        @app.post("/v1/admin/agents/{agent_id}/comparisons", **admin_run)
        def compare_versions(
            agent_id: str, request: ComparisonRequest, http: Request, _bearer: Credentials = None
        ) -> RunItem:
            """Start comparison_job: the two versions side by side on the same test split,
            prompts and seed, shown as model_comparison in the UI and kept in MLflow."""
            if request.version_a == request.version_b:
                # 409, not 422: the document cannot say "two different values", so a request
                # it allows meets a conflict of its own values.
                raise HTTPException(
                    409, f"version_a and version_b are both {request.version_a}: give two versions"
                )
            return deployment_job(
                agent_id,
                http,
                "agent.compare",
                "comparison_job",
                "model_comparison",
                request.model_dump(),
                partitioned=True,
            )

        @app.post("/v1/admin/agents/{agent_id}/undeploy", **admin_run)
        def undeploy(
            agent_id: str, request: UndeployRequest, http: Request, _bearer: Credentials = None
        ) -> RunItem:
            """Start undeploy_job: every server answers 404 for the agent once it has run;
            nothing is deleted, and redeploy serves it again."""
            identity = caller(http, "admin", agent_id)
            actor = identity.actor if identity else "open-server"
            config = {"reason": request.reason, "requested_by": actor}
            return deployment_job(
                agent_id, http, "agent.undeploy", "undeploy_job", "undeploy_agent", config
            )

        @app.post("/v1/admin/agents/{agent_id}/redeploy", **admin_run)
        def redeploy(agent_id: str, http: Request, _bearer: Credentials = None) -> RunItem:
            """Start redeploy_job: an undeployed agent served again, from the versions it had."""
            identity = caller(http, "admin", agent_id)
            actor = identity.actor if identity else "open-server"
            return deployment_job(
                agent_id,
                http,
                "agent.redeploy",
                "redeploy_job",
                "redeploy_agent",
                {"requested_by": actor},
            )

    @app.get(
        "/v1/admin/deployments",
        response_model=list[AgentDeployment],
        responses={
            **keyed,
            503: {"model": Problem, "description": "the query-log store is unavailable"},
        },
    )
    def deployments(http: Request, _bearer: Credentials = None) -> list[AgentDeployment]:
        """What this server serves: per agent and role, the version, since when, its test
        loss and the checks it passed at export; and each candidate it refused, with why."""
        identity = caller(http, "admin")
        keys = admin_log()
        found = []
        for agent_id, models in sorted(app.state.pool.agents.items()):
            if identity is not None and not identity.may("admin", agent_id):
                continue
            roles = {}
            for role in ("champion", "challenger", "teacher"):
                model = getattr(models, role)
                if model is None:
                    roles[role] = None
                    continue
                split, loss = model.card.reported_loss()
                roles[role] = RoleStatus(
                    version=model.deployment.version,
                    family=model.deployment.family,
                    deployed_at=model.deployment.deployed_at,
                    test_loss=loss if split == "test" else None,
                    checks=dict(model.card.onnx.checks) if model.card.onnx else {},
                )
            found.append(AgentDeployment(agent_id=agent_id, roles=roles, refused=models.refused))
        for agent_id, marker in sorted(app.state.pool.undeployed.items()):
            if identity is None or identity.may("admin", agent_id):
                found.append(
                    AgentDeployment(
                        agent_id=agent_id,
                        roles=dict.fromkeys(("champion", "challenger", "teacher")),
                        refused={},
                        undeployed=f"since {marker.at} by {marker.by}: {marker.reason}",
                    )
                )
        audited(keys, identity, http, "deployments.read", "server", f"{len(found)} agents")
        return found

    @app.get(
        "/v1/admin/agents/{agent_id}/versions",
        response_model=list[VersionItem],
        responses={
            **keyed,
            404: {"model": Problem, "description": "no such agent"},
            503: {"model": Problem, "description": "the query-log store is unavailable"},
        },
    )
    def versions(agent_id: str, http: Request, _bearer: Credentials = None) -> list[VersionItem]:
        """The agent's released versions, newest first: family, hyperparameters, test loss,
        parent, what made it, the roles pointing at it now and when it was last deployed."""
        from thunder_dagster.deployments.catalog import agent_versions

        identity = caller(http, "admin", agent_id)
        deployments_dir = settings.deployments_root / agent_id
        models_dir = settings.deployments_root.parent / "models" / agent_id
        if not AGENT_ID_PATTERN.fullmatch(agent_id) or not (
            deployments_dir.is_dir() or models_dir.is_dir()
        ):
            raise HTTPException(404, f"unknown agent {agent_id!r}: nothing was released for it")
        keys = admin_log()
        entries = agent_versions(models_dir, deployments_dir)
        audited(keys, identity, http, "versions.read", f"agent:{agent_id}", f"{len(entries)}")
        return [
            VersionItem(**(dataclasses.asdict(entry) | {"roles": list(entry.roles)}))
            for entry in entries
        ]

    @app.post(
        "/v1/admin/agents/{agent_id}/ab-tests",
        status_code=201,
        response_model=AbTestItem,
        responses={
            400: UNREADABLE_BODY,
            **keyed,
            404: {"model": Problem, "description": "no model deployed for the agent"},
            409: {"model": Problem, "description": "no challenger, or a test already runs"},
            503: {"model": Problem, "description": "the query-log store is unavailable"},
        },
    )
    def create_ab_test(
        agent_id: str, request: AbTestRequest, http: Request, _bearer: Credentials = None
    ) -> AbTestItem:
        """Start an A/B test of the challenger this server serves for the agent against its
        champion, or with `best_of` of the champion answering best-of-n against single
        answers: `split` of the users get the challenger until the evaluation decides (with
        `min_sample` rated answers per variant, at `confidence`) or someone stops it."""
        from thunder_dagster.feedback.experiments import AbTestError

        identity = caller(http, "admin", agent_id)
        models = models_of(agent_id)
        keys = admin_log()
        target = f"agent:{agent_id}"
        challenger_version = models.challenger.deployment.version if models.challenger else None
        if request.best_of is not None:
            from thunder_dagster.feedback.experiments import best_of_version
            from thunder_dagster.serving.rewards import RewardUnavailableError

            try:
                app.state.rewards.get(agent_id)
            except RewardUnavailableError as error:
                audited(keys, identity, http, "ab_test.create", target, str(error), "failed")
                raise HTTPException(409, f"best-of-{request.best_of} needs {error}") from None
            challenger_version = best_of_version(
                models.champion.deployment.version, request.best_of
            )
        elif models.challenger is None:
            why = models.refused.get("challenger", "none is deployed")
            audited(
                keys, identity, http, "ab_test.create", target, f"no challenger: {why}", "failed"
            )
            raise HTTPException(
                409,
                f"agent {agent_id} has no challenger to test ({why}): deploy one first (a "
                "fine-tune or distillation run releases one)",
            )
        try:
            test = ab_tests().create(
                agent_id,
                models.champion.deployment.version,
                challenger_version,
                request.split,
                identity.actor if identity else "open-server",
                request.min_sample,
                request.confidence,
            )
        except AbTestError as error:
            audited(keys, identity, http, "ab_test.create", target, str(error), "failed")
            raise HTTPException(409, str(error)) from None
        audited(
            keys,
            identity,
            http,
            "ab_test.create",
            target,
            f"test {test.id}: {test.challenger_version} at split {test.split}",
        )
        return ab_test_item(test)

    @app.get(
        "/v1/admin/agents/{agent_id}/ab-tests",
        response_model=list[AbTestItem],
        responses={
            **keyed,
            503: {"model": Problem, "description": "the query-log store is unavailable"},
        },
    )
    def list_ab_tests(
        agent_id: str, http: Request, _bearer: Credentials = None
    ) -> list[AbTestItem]:
        """The agent's A/B tests, newest first, running or ended."""
        identity = caller(http, "admin", agent_id)
        keys = admin_log()
        tests = ab_tests().listed(agent_id)
        audited(keys, identity, http, "ab_test.list", f"agent:{agent_id}", f"{len(tests)}")
        return [ab_test_item(test) for test in tests]

    def ab_test_of(test_id: str, identity, keys, http: Request, action: str):
        """The test, or the 404 that says there is none; a key limited to other agents gets
        403 as it would for the agent by name."""
        from thunder_dagster.feedback.experiments import AbTestError

        tests = ab_tests()
        try:
            test = tests.get(test_id)
        except AbTestError as error:
            audited(keys, identity, http, action, f"ab_test:{test_id}", str(error), "failed")
            raise HTTPException(404, str(error)) from None
        if identity is not None and not identity.may("admin", test.agent_id):
            audited(keys, identity, http, action, f"ab_test:{test_id}", "other agent", "denied")
            raise HTTPException(
                403, f"key {identity.key_id} ({identity.name}) lacks agent {test.agent_id!r}"
            )
        return tests, test

    @app.get(
        "/v1/admin/ab-tests/{test_id}",
        response_model=AbTestResults,
        responses={
            **keyed,
            404: {"model": Problem, "description": "no such test"},
            503: {"model": Problem, "description": "the query-log store is unavailable"},
        },
    )
    def ab_test_live(test_id: AbTestId, http: Request, _bearer: Credentials = None):
        """The test and its live results: per variant the answers, rated answers, positive rate
        and mean score with 95% intervals, the p-values, and what the evaluation would decide
        now."""
        from thunder_dagster.feedback.experiments import live_result

        identity = caller(http, "admin")
        keys = admin_log()
        _tests, test = ab_test_of(test_id, identity, keys, http, "ab_test.read")
        app.state.writer.flush()  # this server's answers so far count too
        result = live_result(test, open_store().outcomes(test.agent_id, test.created_at))
        audited(keys, identity, http, "ab_test.read", f"ab_test:{test_id}", result.decision)
        return ab_test_results(test, result)

    @app.post(
        "/v1/admin/ab-tests/{test_id}/stop",
        response_model=AbTestItem,
        responses={
            400: UNREADABLE_BODY,
            **keyed,
            404: {"model": Problem, "description": "no such test"},
            409: {"model": Problem, "description": "the test already ended"},
            503: {"model": Problem, "description": "the query-log store is unavailable"},
        },
    )
    def stop_ab_test(
        test_id: AbTestId, request: StopRequest, http: Request, _bearer: Credentials = None
    ) -> AbTestItem:
        """Stop a running test early: its challenger answers nobody from the next split refresh
        on (every server within seconds), and the next A/B evaluation retires it."""
        from thunder_dagster.feedback.experiments import AbTestError

        identity = caller(http, "admin")
        keys = admin_log()
        tests, test = ab_test_of(test_id, identity, keys, http, "ab_test.stop")
        target = f"ab_test:{test_id}"
        actor = identity.actor if identity else "open-server"
        try:
            ended = tests.end(test.id, "stopped", actor, request.reason)
        except AbTestError as error:
            audited(
                keys, identity, http, "ab_test.stop", f"ab_test:{test_id}", str(error), "failed"
            )
            raise HTTPException(409, str(error)) from None
        audited(keys, identity, http, "ab_test.stop", target, request.reason)
        return ab_test_item(ended)

    return app


@dataclass(frozen=True)
class Ranked:
    """How an answer was chosen: of how many candidates, its reward score, and why fewer were
    ranked than asked for."""

    candidates: int = 1
    reward: float | None = None
    error: str | None = None


def new_request_id() -> str:
    import uuid

    return uuid.uuid4().hex
