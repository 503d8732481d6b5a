"""What probes and Prometheus ask: /livez, /healthz and /metrics. Public: no key needed."""

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from thunder_dagster.serving.api.deps import State
from thunder_dagster.serving.state import ServingState

router = APIRouter()


@router.get("/metrics", include_in_schema=False)
def prometheus(state: State) -> Response:
    """What Prometheus scrapes: the server's metrics in its text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/livez")
def livez() -> dict:
    """The process answers: what a liveness probe asks (no store, no model involved)."""
    return {"status": "alive"}


@router.get("/healthz", responses={503: {"description": "deployed agents, none can answer"}})
def healthz(state: State) -> JSONResponse:
    """ok, or degraded with each problem and the agent it concerns (no file paths). 503 only
    when agents are deployed and none of them can answer: then a load balancer should send
    its traffic elsewhere; a stale watcher or an unwritable log still answers, with 200."""
    pool = state.pool
    agents = {name: models.versions() for name, models in sorted(pool.agents.items())}
    problems = _problems(state)
    answering = any(models.champion is not None for models in pool.agents.values())
    status = 503 if pool.agents and not answering else 200
    body = {
        "status": "degraded" if problems else "ok",
        "agents": agents,
        "problems": problems,
        "undeployed": sorted(pool.undeployed),
    }
    return JSONResponse(body, status_code=status)


def _problems(state: ServingState) -> list[dict]:
    pool = state.pool
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
    logging_problem = state.writer.problem()
    if logging_problem:
        problems.append({"reason": logging_problem})
    for name, models in sorted(pool.agents.items()):
        if models.champion is None:
            why = models.refused.get("champion", "no champion is deployed")
            problems.append({"agent": name, "reason": f"no loadable champion: {why}"})
        for role, why in sorted(models.refused.items()):
            if role != "champion" or models.champion is not None:
                problems.append({"agent": name, "reason": f"{role} refused: {why}"})
    problems += state.retrieval.problems()
    problems += state.rewards.problems()
    problems += state.adapters.problems()
    teacher = state.teacher
    if teacher is not None and teacher.breaker.state() != "closed":
        problems.append(
            {
                "reason": f"API B's circuit is {teacher.breaker.state()} after failures; "
                f"unsure answers stay local for {teacher.breaker.reopens_in():.0f} s more"
            }
        )
    return problems
