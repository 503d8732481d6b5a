"""The model server's app (`thunder serve`): FastAPI over the answering engine. Imports
neither Dagster nor TensorFlow. One router per resource (serving/api/routes/); the admin
runs' router only with a Dagster webserver to act through. Every route but the public probes
takes its caller from a dependency (api/deps.py), and what an audited route ended with is
recorded (api/audit.py)."""

import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from thunder_dagster.serving.answering import Answerer
from thunder_dagster.serving.api import audit, problems
from thunder_dagster.serving.api.admission import BodyLimit, foreign_host
from thunder_dagster.serving.api.routes import (
    abtests,
    agents,
    catalog,
    classify,
    completions,
    feedback,
    generate,
    health,
    runs,
    search,
)
from thunder_dagster.serving.metrics import ServerMetrics
from thunder_dagster.serving.state import ServerSettings, ServingState

ROUTERS = (health, generate, classify, search, feedback, catalog, abtests, completions, agents)


def create_app(settings: ServerSettings) -> FastAPI:
    metrics = ServerMetrics()
    denials = audit.DenialBudget()

    @asynccontextmanager
    async def lifespan(served: FastAPI):
        state = ServingState.open(settings, metrics)
        # On app.state, where an operator's tooling (and the tests) can reach them.
        served.state.serving, served.state.answerer = state, Answerer(state)
        served.state.pool, served.state.writer = state.pool, state.writer
        served.state.retrieval, served.state.splits = state.retrieval, state.splits
        yield
        state.close()

    app = FastAPI(title="thunder-dagster model server", lifespan=lifespan)
    problems.install(app)
    for module in ROUTERS:
        app.include_router(module.router)
    if settings.dagster_url:
        app.include_router(runs.router)

    @app.middleware("http")
    async def measured_and_audited(request: Request, call_next):
        started = time.perf_counter()
        problem = audit.request_id_problem(request)
        if problem is not None:
            return JSONResponse({"detail": problem}, status_code=400)
        problem = foreign_host(request, settings)
        if problem is not None:
            return JSONResponse({"detail": problem}, status_code=403)
        response = await call_next(request)
        route = request.scope.get("route")
        endpoint = getattr(route, "path", "unmatched")
        agent = metrics.agent_label(request.path_params.get("agent_id"))
        metrics.requests.labels(endpoint, agent, str(response.status_code)).inc()
        metrics.request_seconds.labels(endpoint).observe(time.perf_counter() - started)
        await audit.record(request, response.status_code, app.state.serving, denials)
        return response

    # Outside every other middleware: a body over the limit is refused before it is read.
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.auth == "open":
        app.openapi = _without_keys(app)
    return app


def _without_keys(app: FastAPI):
    """An open server's document: no Bearer scheme and no 401 or 403, since it answers
    neither."""
    generated = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generated()
        document.get("components", {}).pop("securitySchemes", None)
        for path in document["paths"].values():
            for operation in path.values():
                operation.pop("security", None)
                for status in ("401", "403"):
                    operation.get("responses", {}).pop(status, None)
        return document

    return openapi
