"""What probes and Prometheus ask: /livez, /healthz and /metrics. /livez and /healthz need
no key; on a server with keys, /metrics and the agent names in /healthz need a key with the
metrics or admin scope (without one, /healthz says only its status and its problems' reasons)."""

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from thunder_dagster.serving.api.deps import State
from thunder_dagster.serving.state import ServingState

router = APIRouter()


def may_see_agents(request: Request, state: ServingState, required: bool) -> bool:
    """Whether the caller may see the agents' names: any caller of an open server, a key with
    the metrics or admin scope on one with keys. With `required`, a caller who may not gets
    401 (no valid key) or 403 (a key without either scope) instead of False."""
    if state.settings.auth == "open" and not state.keys.keys():
        return True
    try:
        identity = state.keys.authenticate(request)
    except HTTPException:
        if required:
            raise
        return False
    if any(scope in identity.scopes for scope in ("metrics", "admin")):
        return True
    if required:
        raise HTTPException(
            403, f"key {identity.key_id} ({identity.name}) lacks scope 'metrics' (or 'admin')"
        )
    return False


@router.get("/metrics", include_in_schema=False)
def prometheus(request: Request, state: State) -> Response:
    """What Prometheus scrapes: the server's metrics in its text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    may_see_agents(request, state, required=True)

    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/livez")
def livez() -> dict:
    """The process answers: what a liveness probe asks (no store, no model involved)."""
    return {"status": "alive"}


@router.get("/healthz", responses={503: {"description": "deployed agents, none can answer"}})
def healthz(request: Request, state: State) -> JSONResponse:
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
    if not may_see_agents(request, state, required=False):
        # The server's own problems; the agents' only counted, since their reasons name them.
        shown = [problem for problem in problems if "agent" not in problem]
        named = len(problems) - len(shown)
        if named:
            shown.append(
                {"reason": f"{named} problems of agents (a key with the metrics scope sees them)"}
            )
        body = {"status": body["status"], "problems": shown}
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
