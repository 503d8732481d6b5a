"""The admin API's runs, started, read and cancelled through the Dagster webserver, so the UI
shows them: training an agent, the deployment jobs (rollback, undeploy, redeploy) and the
comparison of two versions. Included only when a webserver is configured."""

from typing import Annotated

from fastapi import APIRouter, Query

from thunder_dagster.home import AGENT_ID_PATTERN
from thunder_dagster.serving.api.audit import Trail, audited
from thunder_dagster.serving.api.deps import Admin, State
from thunder_dagster.serving.api.problems import described
from thunder_dagster.serving.api.schemas import (
    ComparisonRequest,
    PromoteRequest,
    RollbackRequest,
    RunId,
    RunItem,
    TrainingRequest,
    UndeployRequest,
)
from thunder_dagster.serving.errors import Conflict, UnknownAgent, Unreachable
from thunder_dagster.serving.remote import RemoteError, RunState, WebserverLauncher
from thunder_dagster.serving.state import ServingState

router = APIRouter()
UNAVAILABLE = "no webserver, or no store, to act through"
STARTS = {
    "status_code": 202,
    "response_model": RunItem,
    "responses": described(
        {
            404: "no such agent",
            409: "Dagster refused the run (or a comparison names one version twice)",
            503: UNAVAILABLE,
        },
        body=True,
    ),
}
STARTED_BY = {"thunder/started_by": "admin-api"}


def launcher(state: ServingState) -> WebserverLauncher:
    return WebserverLauncher(state.settings.dagster_url)


def acted(trail: Trail, call) -> RunItem:
    """A call to the webserver: 409 when Dagster refuses, 503 when it does not answer."""
    try:
        run: RunState = call()
    except RemoteError as error:
        raise (Conflict if "refused" in str(error) else Unreachable)(str(error)) from error
    trail.detail = f"run {run.run_id}: {run.status}"
    return RunItem(run_id=run.run_id, status=run.status)


def _released(state: ServingState, agent_id: str) -> None:
    if (
        not AGENT_ID_PATTERN.fullmatch(agent_id)
        or not state.settings.home.deployments_dir(agent_id).is_dir()
    ):
        raise UnknownAgent(f"unknown agent {agent_id!r}: nothing was deployed for it")


@router.post("/v1/admin/agents/{agent_id}/training", **STARTS)
def start_training(
    agent_id: str,
    request: TrainingRequest,
    trail: Annotated[Trail, audited("training.start")],
    _who: Admin,
    state: State,
) -> RunItem:
    """Start the agent's training job for its task (a generator's pipeline_job, a classifier's
    classifier_pipeline_job: ingest, search, training, export, deployment) with `minutes` for
    the whole run, through the Dagster webserver: the UI shows it."""
    from thunder_dagster.tasks.agents import AgentSettingsError, read_task
    from thunder_dagster.times import utc_now
    from thunder_dagster.training_plan import plan_for

    if not AGENT_ID_PATTERN.fullmatch(agent_id):
        raise UnknownAgent(f"unknown agent {agent_id!r}")
    try:
        task = read_task(state.settings.home.agent_dir(agent_id))
    except AgentSettingsError as error:
        raise Conflict(str(error)) from None
    job, ops = plan_for(task, request.trials, request.minutes, utc_now())
    tags = {"dagster/partition": agent_id, **STARTED_BY}
    return acted(trail, lambda: launcher(state).submit(job, agent_id, ops, tags))


def _run_of(state: ServingState, who, run_id: str) -> None:
    """A key limited to some agents reaches only their runs."""
    if who.limited:
        try:
            agent = launcher(state).agent_of(run_id)
        except RemoteError as error:
            raise (Conflict if "refused" in str(error) else Unreachable)(str(error)) from error
        who.reach(agent, f"run {run_id}")


@router.get(
    "/v1/admin/runs/{run_id}",
    response_model=RunItem,
    responses=described({409: "Dagster has no such run", 503: UNAVAILABLE}),
)
def run_state(
    run_id: RunId,
    trail: Annotated[Trail, audited("run.read", "run:{run_id}")],
    who: Admin,
    state: State,
) -> RunItem:
    """A run's status as Dagster reports it (QUEUED, STARTED, SUCCESS, CANCELED, ...)."""
    _run_of(state, who, run_id)
    return acted(trail, lambda: launcher(state).status(run_id))


@router.post(
    "/v1/admin/runs/{run_id}/cancel",
    response_model=RunItem,
    responses=described({409: "Dagster refused to cancel the run", 503: UNAVAILABLE}),
)
def cancel(
    run_id: RunId,
    trail: Annotated[Trail, audited("run.cancel", "run:{run_id}")],
    who: Admin,
    state: State,
    force: Annotated[
        bool,
        Query(
            description="mark it CANCELED now and kill its process, as the UI's force "
            "termination does (for a run that stays CANCELING)"
        ),
    ] = False,
) -> RunItem:
    """Cancel a run: Dagster asks it to stop and marks it CANCELED when it has."""
    if force:
        trail.action = "run.force_cancel"
    _run_of(state, who, run_id)
    return acted(trail, lambda: launcher(state).cancel(run_id, force))


def deployment_run(
    state: ServingState, trail: Trail, agent_id: str, job: str, op: str, config: dict
) -> RunItem:
    """A run of one of the deployment jobs for the agent, so the pointer and the MLflow alias
    move together, as the UI and the CLI move them."""
    _released(state, agent_id)
    ops = {op: {"config": {"agent_id": agent_id, **config}}}
    return acted(trail, lambda: launcher(state).submit(job, agent_id, ops, STARTED_BY))


@router.post("/v1/admin/agents/{agent_id}/rollback", **STARTS)
def roll_back(
    agent_id: str,
    request: RollbackRequest,
    trail: Annotated[Trail, audited("agent.rollback")],
    _who: Admin,
    state: State,
) -> RunItem:
    """Start rollback_job: the champion back one version, or to `to_version`. The run
    fails, and nothing moves, when that version is not an earlier champion or its
    files are gone; every server serves the new champion within its reload interval."""
    config = {"to_version": request.to_version}
    return deployment_run(state, trail, agent_id, "rollback_job", "roll_back_champion", config)


@router.post("/v1/admin/agents/{agent_id}/comparisons", **STARTS)
def compare_versions(
    agent_id: str,
    request: ComparisonRequest,
    trail: Annotated[Trail, audited("agent.compare")],
    _who: Admin,
    state: State,
) -> RunItem:
    """Start comparison_job: the two versions side by side on the same test split,
    prompts and seed, shown as model_comparison in the UI and kept in MLflow."""
    if request.version_a == request.version_b:
        # 409, not 422: the document cannot say "two different values", so a request it
        # allows meets a conflict of its own values.
        raise Conflict(f"version_a and version_b are both {request.version_a}: give two versions")
    _released(state, agent_id)
    ops = {"model_comparison": {"config": request.model_dump()}}
    tags = {"dagster/partition": agent_id, **STARTED_BY}
    return acted(trail, lambda: launcher(state).submit("comparison_job", agent_id, ops, tags))


@router.post("/v1/admin/agents/{agent_id}/promote", **STARTS)
def promote(
    agent_id: str,
    request: PromoteRequest,
    trail: Annotated[Trail, audited("agent.promote")],
    who: Admin,
    state: State,
) -> RunItem:
    """Start promote_job: the challenger becomes the champion whatever the champion gate or
    its A/B test said; the run fails, and nothing moves, when there is no challenger."""
    config = {"reason": request.reason, "requested_by": who.actor}
    return deployment_run(state, trail, agent_id, "promote_job", "promote_challenger", config)


@router.post("/v1/admin/agents/{agent_id}/undeploy", **STARTS)
def undeploy(
    agent_id: str,
    request: UndeployRequest,
    trail: Annotated[Trail, audited("agent.undeploy")],
    who: Admin,
    state: State,
) -> RunItem:
    """Start undeploy_job: every server answers 404 for the agent once it has run;
    nothing is deleted, and redeploy serves it again."""
    config = {"reason": request.reason, "requested_by": who.actor}
    return deployment_run(state, trail, agent_id, "undeploy_job", "undeploy_agent", config)


@router.post("/v1/admin/agents/{agent_id}/redeploy", **STARTS)
def redeploy(
    agent_id: str,
    trail: Annotated[Trail, audited("agent.redeploy")],
    who: Admin,
    state: State,
) -> RunItem:
    """Start redeploy_job: an undeployed agent served again, from the versions it had."""
    config = {"requested_by": who.actor}
    return deployment_run(state, trail, agent_id, "redeploy_job", "redeploy_agent", config)
