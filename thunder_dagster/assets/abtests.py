from dataclasses import replace
from datetime import datetime

import dagster as dg
from pydantic import Field

from thunder_dagster.adapters.releases import ab_folder
from thunder_dagster.deployments.gate import labelled
from thunder_dagster.deployments.pointers import read_pointer
from thunder_dagster.deployments.releases import NoChallengerError, promote, retire
from thunder_dagster.feedback.abtest import (
    ACCURACY,
    DEFAULT_CONFIDENCE,
    DEFAULT_MIN_SAMPLE,
    POSITIVE_RATE,
    AbResult,
    compare,
    outcome_of,
)
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.runtime.errors import failing_on
from thunder_dagster.runtime.metadata import image, markdown_table
from thunder_dagster.runtime.partitions import agents


class AbTestConfig(dg.Config):
    min_sample: int | None = Field(
        default=None,
        ge=1,
        description="Rated answers each variant needs before a decision; empty: the agent's "
        f"A/B test's, or {DEFAULT_MIN_SAMPLE} when it has none",
    )
    alpha: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Significance level, two-sided; empty: one minus the A/B test's confidence, "
        f"or {1 - DEFAULT_CONFIDENCE:.2f}",
    )


@dg.asset(
    group_name="feedback",
    kinds={"sql", "scipy"},
    partitions_def=agents,
    check_specs=[
        dg.AssetCheckSpec("challenger_significantly_better", asset="ab_test_result", blocking=True)
    ],
)
def ab_test_result(
    context: dg.AssetExecutionContext,
    config: AbTestConfig,
    thunder: ThunderHome,
    tracking: MlflowTracking,
    queries: QueryLogStore,
):
    """Champion against challenger since the challenger's A/B test began (since it was
    deployed, when it has no test), and the decision.

    Positive rate (a classifier's accuracy, against the labels its users gave) and mean score
    per variant with 95% intervals and a two-sided test; promote,
    retire, or continue until both have the test's minimum sample, at its confidence. A test an
    operator stopped retires its challenger, and so does one that reached its maximum duration
    undecided (it ends inconclusive). A retired challenger stops serving here and its test
    ends; a promoted one is champion_promotion's to move."""
    from thunder_dagster.feedback.experiments import AbTestStore, best_of_in
    from thunder_dagster.times import utc_now

    home = thunder.home()
    agent_id = context.partition_key
    deployments = ab_folder(home.deployments_dir(agent_id))
    champion, challenger = read_pointer(deployments), read_pointer(deployments, "challenger")
    with queries.open() as store:
        tests = AbTestStore(store.engine)
        running = tests.running(agent_id)
        # Without a challenger model, the test may be of a serving policy: the champion
        # answering best-of-n.
        policy = best_of_in(running.challenger_version) if running and not challenger else None
        if champion is None or (challenger is None and policy is None):
            raise dg.Failure(
                f"{agent_id}: an A/B test needs a champion and a challenger (a model, or a "
                f"best-of-n test of the champion); have {champion and champion.version} and "
                f"{challenger and challenger.version}",
                allow_retries=False,
            )
        tested = challenger.version if challenger else running.challenger_version
        test = tests.latest(agent_id, tested)
        since = test.created_at if test else datetime.fromisoformat(challenger.deployed_at)
        outcomes = store.outcomes(agent_id, since)
        result: AbResult = compare(
            outcome_of(outcomes, "champion", test.champion_version if test else champion.version),
            outcome_of(outcomes, "challenger", tested),
            config.min_sample or (test.min_sample if test else DEFAULT_MIN_SAMPLE),
            config.alpha or (test.alpha if test else round(1 - DEFAULT_CONFIDENCE, 10)),
            ACCURACY if labelled(champion) else POSITIVE_RATE,
        )
        ending = "retired"
        if test is not None and test.status == "stopped":
            result = replace(
                result,
                decision="retire",
                reason=f"A/B test {test.id} was stopped by {test.ended_by}: {test.reason}",
            )
        elif test is not None and result.decision == "continue" and test.out_of_days(utc_now()):
            # No verdict in the test's days: it ends, so that the loop may try another.
            ending = "inconclusive"
            result = replace(
                result,
                decision="retire",
                reason=f"{test.describe(utc_now())} ran out of days undecided: {result.reason}",
            )
        if result.decision == "retire":
            if challenger is not None:
                retire(deployments, tracking.registry(tracking.tracker(context.log.warning)))
            context.log.info(f"{agent_id} challenger {tested} retired: {result.reason}")
            if test is not None and test.running:
                tests.end(test.id, ending, "ab_test_result", result.reason)
    metadata = _result_metadata(agent_id, result, champion.version, tested, test)
    yield dg.Output(result, metadata=metadata)
    yield dg.AssetCheckResult(
        check_name="challenger_significantly_better",
        passed=result.significantly_better,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.reason,
        metadata={"decision": result.decision, "p_value": result.positive_rate_p_value},
    )


def _result_metadata(agent_id: str, result: AbResult, champion: str, tested: str, test) -> dict:
    from thunder_dagster.modeling.plots import ab_comparison

    rows = [
        [
            s.variant,
            s.model_version,
            s.answers,
            s.rated,
            f"{s.positive_rate:.3f} ({s.positive_rate_ci[0]:.3f}-{s.positive_rate_ci[1]:.3f})",
            f"{s.mean_score:.2f} ({s.mean_score_ci[0]:.2f}-{s.mean_score_ci[1]:.2f})",
        ]
        for s in (result.champion, result.challenger)
    ]
    headers = ["variant", "version", "answers", "rated", f"{result.measure} (95% CI)"]
    headers += ["mean score (95% CI)"]
    plot = ab_comparison(
        [result.champion.plot_point(), result.challenger.plot_point()],
        title=f"{agent_id}: {result.decision} (p = {result.positive_rate_p_value:.3g})",
        measure=result.measure,
    )
    return {
        "decision": result.decision,
        "reason": result.reason,
        "measure": result.measure,
        "champion_version": champion,
        "challenger_version": tested,
        "ab_test": test.id if test else "none (the server's default share)",
        "min_sample": result.min_sample,
        "alpha": dg.MetadataValue.float(result.alpha),
        "positive_rate_p_value": dg.MetadataValue.float(result.positive_rate_p_value),
        "mean_score_p_value": dg.MetadataValue.float(result.mean_score_p_value),
        "variants": markdown_table(headers, rows),
        "comparison": image(plot, "A/B comparison"),
    }


@dg.asset(group_name="feedback", kinds={"mlflow"}, partitions_def=agents)
def champion_promotion(
    context: dg.AssetExecutionContext,
    ab_test_result: AbResult,
    thunder: ThunderHome,
    tracking: MlflowTracking,
    queries: QueryLogStore,
) -> dg.MaterializeResult:
    """The challenger made champion, when the A/B result says promote.

    The pointer and the MLflow alias move together, and only for the challenger that A/B
    result was about and that is deployed now."""
    from thunder_dagster.feedback.experiments import best_of_in

    home = thunder.home()
    agent_id = context.partition_key
    deployments = ab_folder(home.deployments_dir(agent_id))
    challenger = read_pointer(deployments, "challenger")
    tested = ab_test_result.challenger.model_version
    if best_of_in(tested) is not None:
        return _adopt_best_of(context, ab_test_result, deployments, queries)
    # The blocking check only guards this asset inside the run that evaluated it; a run of this
    # asset alone must find the same verdict in the latest result.
    if challenger is None or ab_test_result.decision != "promote" or tested != challenger.version:
        raise dg.Failure(
            f"{agent_id}: not promoted; the latest A/B result is {ab_test_result.decision!r} "
            f"for challenger {tested}, deployed challenger "
            f"{challenger and challenger.version}",
            allow_retries=False,
        )
    with failing_on(NoChallengerError):
        move = promote(deployments, tracking.registry(tracking.tracker(context.log.warning)))
    context.log.info(f"promoted {move.describe()}")
    _end_promoted(queries, agent_id, tested, ab_test_result.reason)
    return dg.MaterializeResult(
        metadata={"champion_version": move.deployment.version, "reason": ab_test_result.reason}
    )


def _adopt_best_of(context, result: AbResult, deployments, queries) -> dg.MaterializeResult:
    """A best-of-n test that says promote: the agent's answers use best-of-n from now on
    (deployments/<agent>/best_of.json, which every server reads), the champion unchanged."""
    from thunder_dagster.deployments.rewards import AdoptedBestOf
    from thunder_dagster.feedback.experiments import best_of_in
    from thunder_dagster.times import utc_now

    agent_id = context.partition_key
    tested = result.challenger.model_version
    base, count = best_of_in(tested)
    champion = read_pointer(deployments)
    if result.decision != "promote" or champion is None or champion.version != base:
        raise dg.Failure(
            f"{agent_id}: best-of-{count} not adopted; the latest A/B result is "
            f"{result.decision!r} for {tested}, the champion is {champion and champion.version}",
            allow_retries=False,
        )
    AdoptedBestOf(count, base, utc_now().isoformat()).write(deployments)
    context.log.info(f"{agent_id} answers best-of-{count} from now on: {result.reason}")
    _end_promoted(queries, agent_id, tested, result.reason)
    return dg.MaterializeResult(
        metadata={"champion_version": base, "best_of": count, "reason": result.reason}
    )


def _end_promoted(queries, agent_id: str, tested: str, reason: str) -> None:
    """End the agent's running test of `tested` as promoted (nothing, if another is running)."""
    from thunder_dagster.feedback.experiments import AbTestStore

    with queries.open() as store:
        tests = AbTestStore(store.engine)
        test = tests.running(agent_id)
        if test is not None and test.challenger_version == tested:
            tests.end(test.id, "promoted", "champion_promotion", reason)
