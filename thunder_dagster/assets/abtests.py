from datetime import datetime

import dagster as dg
from pydantic import Field

from thunder_dagster.assets.deployments import registered_model_name
from thunder_dagster.assets.partitions import agents
from thunder_dagster.assets.plots import image, markdown_table
from thunder_dagster.deployments.pointers import (
    CHALLENGER_NAME,
    NoChallengerError,
    promote,
    read_pointer,
    retire,
)
from thunder_dagster.feedback.abtest import AbResult, compare
from thunder_dagster.feedback.records import VariantOutcome
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore
from thunder_dagster.resources.tracking import MlflowTracking


class AbTestConfig(dg.Config):
    min_sample: int = Field(
        default=100, ge=1, description="Rated answers each variant needs before a decision"
    )
    alpha: float = Field(default=0.05, gt=0, lt=1, description="Significance level, two-sided")


def _outcome(outcomes: list[VariantOutcome], variant: str, version: str) -> VariantOutcome:
    for outcome in outcomes:
        if outcome.variant == variant and outcome.model_version == version:
            return outcome
    return VariantOutcome(variant, version, 0, ())


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
    queries: QueryLogStore,
):
    """Champion against challenger since the challenger was deployed: positive rate and mean
    score per variant with 95% intervals, a two-sided test, and the decision (promote, retire,
    or continue until both have the minimum sample). A retired challenger stops serving here."""
    home = thunder.home()
    agent_id = context.partition_key
    deployments = home.deployments_dir(agent_id)
    champion, challenger = read_pointer(deployments), read_pointer(deployments, CHALLENGER_NAME)
    if champion is None or challenger is None:
        raise dg.Failure(
            f"{agent_id}: an A/B test needs a champion and a challenger; "
            f"have {champion and champion.version} and {challenger and challenger.version}",
            allow_retries=False,
        )
    since = datetime.fromisoformat(challenger.deployed_at).replace(tzinfo=None)
    store = queries.open(home)
    try:
        outcomes = store.outcomes(agent_id, since)
    finally:
        store.close()
    result: AbResult = compare(
        _outcome(outcomes, "champion", champion.version),
        _outcome(outcomes, "challenger", challenger.version),
        config.min_sample,
        config.alpha,
    )
    if result.decision == "retire":
        retire(deployments)
        context.log.info(f"{agent_id} challenger {challenger.version} retired: {result.reason}")
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
    from thunder_dagster.modeling.plots import ab_comparison

    plot = ab_comparison(
        [
            {
                "label": f"{s.variant} {s.model_version}",
                "positive_rate": s.positive_rate,
                "positive_rate_ci": s.positive_rate_ci,
                "mean_score": s.mean_score,
                "mean_score_ci": s.mean_score_ci,
            }
            for s in (result.champion, result.challenger)
        ],
        title=f"{agent_id}: {result.decision} (p = {result.positive_rate_p_value:.3g})",
    )
    yield dg.Output(
        result,
        metadata={
            "decision": result.decision,
            "reason": result.reason,
            "champion_version": champion.version,
            "challenger_version": challenger.version,
            "positive_rate_p_value": dg.MetadataValue.float(result.positive_rate_p_value),
            "mean_score_p_value": dg.MetadataValue.float(result.mean_score_p_value),
            "variants": markdown_table(
                [
                    "variant",
                    "version",
                    "answers",
                    "rated",
                    "positive rate (95% CI)",
                    "mean score (95% CI)",
                ],
                rows,
            ),
            "comparison": image(plot, "A/B comparison"),
        },
    )
    yield dg.AssetCheckResult(
        check_name="challenger_significantly_better",
        passed=result.significantly_better,
        severity=dg.AssetCheckSeverity.ERROR,
        description=result.reason,
        metadata={"decision": result.decision, "p_value": result.positive_rate_p_value},
    )


def latest_ab_metadata(instance, agent_id: str) -> dict | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("ab_test_result"), asset_partitions=[agent_id]),
        limit=1,
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


@dg.asset(
    group_name="feedback",
    kinds={"mlflow"},
    partitions_def=agents,
    deps=["ab_test_result"],
)
def champion_promotion(
    context: dg.AssetExecutionContext, thunder: ThunderHome, tracking: MlflowTracking
) -> dg.MaterializeResult:
    """The challenger made champion: the pointer and the MLflow alias move, only when the
    latest A/B result says promote for the challenger that is deployed now."""
    home = thunder.home()
    agent_id = context.partition_key
    deployments = home.deployments_dir(agent_id)
    challenger = read_pointer(deployments, CHALLENGER_NAME)
    latest = latest_ab_metadata(context.instance, agent_id)
    # The blocking check only guards this asset inside the run that evaluated it; a run of this
    # asset alone must find the same verdict on the latest result.
    if (
        challenger is None
        or latest is None
        or latest.get("decision") != "promote"
        or (latest.get("challenger_version") != challenger.version)
    ):
        raise dg.Failure(
            f"{agent_id}: not promoted; the latest A/B result is "
            f"{latest and latest.get('decision')!r} for challenger "
            f"{latest and latest.get('challenger_version')}, deployed challenger "
            f"{challenger and challenger.version}",
            allow_retries=False,
        )
    try:
        promoted = promote(deployments)
    except NoChallengerError as error:
        raise dg.Failure(str(error), allow_retries=False) from error
    tracker = tracking.tracker(home, context.log.warning)
    tracker.set_alias(registered_model_name(agent_id), "champion", promoted.registry_version)
    context.log.info(f"{agent_id} {promoted.version} promoted to champion")
    return dg.MaterializeResult(
        metadata={"champion_version": promoted.version, "reason": latest.get("reason", "")}
    )
