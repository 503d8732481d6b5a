"""The model server: FastAPI over onnxruntime sessions. Imports neither Dagster nor TensorFlow.

    thunder serve [--host 127.0.0.1] [--port 8000]

GET /healthz, POST /v1/agents/{agent_id}/generate, POST /v1/feedback. Answers come from the
champion, or from the challenger for the A/B share of users; when the answer's confidence is
under the threshold and the agent has a teacher, the teacher answers and the log says so.
"""

import asyncio
import contextlib
import os
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from thunder_dagster.feedback.records import QueryRecord, UnknownQueryError, cache_key
from thunder_dagster.home import AGENT_ID_PATTERN
from thunder_dagster.serving.generation import LoadedModel, generate
from thunder_dagster.serving.models import AgentModels, ModelPool, variant_for
from thunder_dagster.serving.querylog import QueryLogWriter

# What the API document promises; a server may be configured tighter (ServerSettings).
HARD_PROMPT_LIMIT = 4000
HARD_TOKEN_LIMIT = 1024


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
    workers: int = os.cpu_count() or 2


class Problem(BaseModel):
    detail: str = Field(description="what went wrong and what to do")


# FastAPI's own answer to a body it cannot decode (not UTF-8, not JSON at all).
UNREADABLE_BODY = {"model": Problem, "description": "the body cannot be read as JSON"}


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
    user_id: str = Field(min_length=1, max_length=128, description="decides the A/B variant")


class GenerateResponse(BaseModel):
    text: str
    confidence: float
    model_version: str
    variant: str
    query_id: str
    fallback: bool


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)

    query_id: str = Field(min_length=1, max_length=64)
    score: int = Field(ge=1, le=5, description="1 (bad) to 5 (good); 4 and 5 count as positive")
    comment: str | None = Field(default=None, max_length=4000)


def create_app(settings: ServerSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(served: FastAPI):
        # The writer opens the store in its thread while the models load here.
        spool_dir = settings.spool_dir or settings.deployments_root.parent / "spool"
        writer = QueryLogWriter(settings.query_db_url, spool_dir, settings.store_retry_seconds)
        pool = ModelPool(settings.deployments_root, settings.reload_seconds)
        pool.start()
        workers = ThreadPoolExecutor(settings.workers, thread_name_prefix="generate")
        # On app.state, where an operator's tooling (and the tests) can reach them.
        served.state.pool, served.state.writer, served.state.workers = pool, writer, workers
        yield
        workers.shutdown(wait=True)
        pool.stop()
        writer.close()

    app = FastAPI(title="thunder-dagster model server", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, error: RequestValidationError) -> JSONResponse:
        """A 422 naming each bad field. FastAPI's own handler echoes the input back, and an
        input of NaN, which JSON cannot carry, turned the 422 into a 500."""
        details = [
            {"loc": list(problem["loc"]), "msg": problem["msg"], "type": problem["type"]}
            for problem in error.errors()
        ]
        return JSONResponse({"detail": details}, status_code=422)

    def models_of(agent_id: str) -> AgentModels:
        models = app.state.pool.get(agent_id) if AGENT_ID_PATTERN.fullmatch(agent_id) else None
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
        answering = any(models.champion is not None for models in pool.agents.values())
        status = 503 if pool.agents and not answering else 200
        body = {"status": "degraded" if problems else "ok", "agents": agents, "problems": problems}
        return JSONResponse(body, status_code=status)

    @app.post(
        "/v1/agents/{agent_id}/generate",
        response_model=GenerateResponse,
        responses={
            400: UNREADABLE_BODY,
            404: {"model": Problem, "description": "no model deployed for the agent"},
        },
    )
    async def generate_text(agent_id: str, request: GenerateRequest) -> GenerateResponse:
        # Generation runs on a pool of one thread per core, first come first served, so the
        # event loop stays free to read requests: the default pool of 40 threads would have
        # them all fight over the GIL and the cores.
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(app.state.workers, answer_request, agent_id, request)

    def answer_request(agent_id: str, request: GenerateRequest) -> GenerateResponse:
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
        variant = variant_for(agent_id, request.user_id, settings.challenger_share)
        model: LoadedModel = models.challenger if variant == "challenger" else models.champion
        if model is None:
            variant, model = "champion", models.champion
        fallback, teacher_confidence = False, None
        text, confidence = answer(model, request)
        # The log keeps the local model's confidence, the daily rules' input, also when the
        # teacher answers; the teacher's goes in its own column (distillation selects by it).
        local_confidence = confidence
        if confidence < settings.teacher_threshold and models.teacher is not None:
            model, fallback = models.teacher, True
            text, confidence = answer(model, request)
            teacher_confidence = confidence
        latency_ms = (time.perf_counter() - started) * 1000
        query_id = app.state.writer.submit(
            QueryRecord(
                agent_id=agent_id,
                user_id=request.user_id,
                variant=variant,
                model_version=model.deployment.version,
                prompt=request.prompt,
                response=text,
                confidence=local_confidence,
                fallback=fallback,
                latency_ms=latency_ms,
                teacher_confidence=teacher_confidence,
            )
        )
        return GenerateResponse(
            text=text,
            confidence=confidence,
            model_version=model.deployment.version,
            variant=variant,
            query_id=query_id,
            fallback=fallback,
        )

    def answer(model: LoadedModel, request: GenerateRequest) -> tuple[str, float]:
        """Greedy answers are cached per model version; sampled ones never are. Without the
        store (not open yet, or down) an answer is generated, not looked up."""
        store = app.state.writer.store() if request.temperature == 0 else None
        prompt_key = f"{request.prompt}\0{request.max_tokens}"
        key = cache_key(model.deployment.agent_id, model.deployment.version, prompt_key)
        if store is not None:
            try:
                cached = store.cached_response(key)
            except Exception:  # the store went down: the cache is an optimisation only
                store, cached = None, None
            if cached is not None:
                return cached.response, cached.confidence
        generation = generate(model, request.prompt, request.max_tokens, request.temperature)
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
        "/v1/feedback",
        response_model=FeedbackResponse,
        responses={
            400: UNREADABLE_BODY,
            404: {"model": Problem, "description": "no answer has that query_id"},
            503: {"model": Problem, "description": "the query-log store is unavailable"},
        },
    )
    def feedback(request: FeedbackRequest) -> FeedbackResponse:
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

    return app
