"""The admin API's A/B tests as objects: start one for an agent, list them, read one's live
results, stop one early."""

from typing import Annotated

from fastapi import APIRouter

from thunder_dagster.serving.abtests import (
    AbTestId,
    AbTestItem,
    AbTestRequest,
    AbTestResults,
    StopRequest,
    ab_test_item,
    ab_test_results,
)
from thunder_dagster.serving.api.audit import Trail, audited
from thunder_dagster.serving.api.deps import Admin, Caller, Engine, State
from thunder_dagster.serving.api.problems import STORE_DOWN, described
from thunder_dagster.serving.errors import Conflict, NotFound
from thunder_dagster.serving.state import ServingState

router = APIRouter()


def _tests(state: ServingState):
    from thunder_dagster.feedback.experiments import AbTestStore

    return AbTestStore(state.open_store().engine)


@router.post(
    "/v1/admin/agents/{agent_id}/ab-tests",
    status_code=201,
    response_model=AbTestItem,
    responses=described(
        {
            404: "no model deployed for the agent",
            409: "no challenger, or a test already runs",
            503: STORE_DOWN,
        },
        body=True,
    ),
)
def create_ab_test(
    agent_id: str,
    request: AbTestRequest,
    trail: Annotated[Trail, audited("ab_test.create")],
    who: Admin,
    engine: Engine,
) -> AbTestItem:
    """Start an A/B test of the challenger this server serves for the agent against its
    champion, or with `best_of` of the champion answering best-of-n against single
    answers: `split` of the users get the challenger until the evaluation decides (with
    `min_sample` rated answers per variant, at `confidence`) or someone stops it."""
    from thunder_dagster.feedback.experiments import AbTestError, best_of_version
    from thunder_dagster.serving.rewards import RewardUnavailableError

    models = engine.models(agent_id)
    champion = models.champion.deployment.version
    if request.best_of is not None:
        try:
            engine.state.rewards.get(agent_id)
        except RewardUnavailableError as error:
            raise Conflict(f"best-of-{request.best_of} needs {error}") from None
        challenger = best_of_version(champion, request.best_of)
    elif models.challenger is None:
        why = models.refused.get("challenger", "none is deployed")
        raise Conflict(
            f"agent {agent_id} has no challenger to test ({why}): deploy one first (a "
            "fine-tune or distillation run releases one)"
        )
    else:
        challenger = models.challenger.deployment.version
    try:
        test = _tests(engine.state).create(
            agent_id,
            champion,
            challenger,
            request.split,
            who.actor,
            request.min_sample,
            request.confidence,
            request.max_days,
        )
    except AbTestError as error:
        raise Conflict(str(error)) from None
    trail.detail = f"test {test.id}: {test.challenger_version} at split {test.split}"
    return ab_test_item(test)


@router.get(
    "/v1/admin/agents/{agent_id}/ab-tests",
    response_model=list[AbTestItem],
    responses=described({503: STORE_DOWN}),
)
def list_ab_tests(
    agent_id: str,
    trail: Annotated[Trail, audited("ab_test.list")],
    _who: Admin,
    state: State,
) -> list[AbTestItem]:
    """The agent's A/B tests, newest first, running or ended."""
    tests = _tests(state).listed(agent_id)
    trail.detail = f"{len(tests)}"
    return [ab_test_item(test) for test in tests]


def _test_of(state: ServingState, who: Caller, test_id: str):
    """The store and the test, NotFound when there is none; a key limited to other agents is
    refused as it would be for the agent by name."""
    from thunder_dagster.feedback.experiments import AbTestError

    tests = _tests(state)
    try:
        test = tests.get(test_id)
    except AbTestError as error:
        raise NotFound(str(error)) from None
    who.reach(test.agent_id, f"A/B test {test_id}")
    return tests, test


@router.get(
    "/v1/admin/ab-tests/{test_id}",
    response_model=AbTestResults,
    responses=described({404: "no such test", 503: STORE_DOWN}),
)
def ab_test_live(
    test_id: AbTestId,
    trail: Annotated[Trail, audited("ab_test.read", "ab_test:{test_id}")],
    who: Admin,
    state: State,
):
    """The test and its live results: per variant the answers, rated answers, the share
    right (positive rate; a classifier's accuracy) and mean score with 95% intervals, the
    p-values, and what the evaluation would decide now."""
    from thunder_dagster.feedback.abtest import ACCURACY, POSITIVE_RATE
    from thunder_dagster.feedback.experiments import live_result
    from thunder_dagster.serving.classification import LoadedClassifier

    _, test = _test_of(state, who, test_id)
    state.writer.flush()  # this server's answers so far count too
    models = state.pool.get(test.agent_id)
    labelled = models is not None and isinstance(models.champion, LoadedClassifier)
    outcomes = state.open_store().outcomes(test.agent_id, test.created_at)
    result = live_result(test, outcomes, ACCURACY if labelled else POSITIVE_RATE)
    trail.detail = result.decision
    return ab_test_results(test, result)


@router.post(
    "/v1/admin/ab-tests/{test_id}/stop",
    response_model=AbTestItem,
    responses=described(
        {404: "no such test", 409: "the test already ended", 503: STORE_DOWN}, body=True
    ),
)
def stop_ab_test(
    test_id: AbTestId,
    request: StopRequest,
    trail: Annotated[Trail, audited("ab_test.stop", "ab_test:{test_id}")],
    who: Admin,
    state: State,
) -> AbTestItem:
    """Stop a running test early: its challenger answers nobody from the next split refresh
    on (every server within seconds), and the next A/B evaluation retires it."""
    from thunder_dagster.feedback.experiments import AbTestError

    tests, test = _test_of(state, who, test_id)
    try:
        ended = tests.end(test.id, "stopped", who.actor, request.reason)
    except AbTestError as error:
        raise Conflict(str(error)) from None
    trail.detail = request.reason
    return ab_test_item(ended)
