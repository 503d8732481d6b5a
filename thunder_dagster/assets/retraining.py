from collections.abc import Callable
from pathlib import Path

import dagster as dg
from pydantic import Field

from thunder_dagster.deployments.pointers import read_pointer
from thunder_dagster.deployments.releases import release
from thunder_dagster.feedback.records import TrainingExample
from thunder_dagster.modeling.reports import EXPORT_CHECKS, ExportReport
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.runtime.configs import BudgetConfig
from thunder_dagster.runtime.metadata import check_results, links
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.runtime.policies import TRAINING_POOL
from thunder_dagster.tracking.progress import epoch_reporter


class ChallengerConfig(BudgetConfig):
    """The A/B test a released challenger gets: its own window, from its release."""

    ab_split: float = Field(
        default=0.2, gt=0, lt=1, description="Share of users the challenger answers in its test"
    )
    ab_max_days: int = Field(
        default=14,
        ge=1,
        description="Days the test may run undecided before it ends inconclusive and the "
        "challenger is retired; until then the daily rules start no new challenger",
    )


class FineTuneConfig(ChallengerConfig):
    learning_rate: float = Field(default=1e-4, gt=0, description="From the daily rules' table")
    dataset_limit: int = Field(default=1000, ge=1, description="Most rated answers to use")
    epochs: int = Field(default=3, ge=1, description="Most epochs over the examples")
    batch_size: int = Field(default=4, ge=1, description="Windows per batch")
    validation_split: float = Field(default=0.2, gt=0, lt=1, description="Examples held out")
    max_minutes: float = Field(default=10.0, gt=0, description="Wall-clock budget")


class DistillationConfig(ChallengerConfig):
    learning_rate: float = Field(
        default=1e-4, gt=0, description="From the daily rules' table; scales the student's rate"
    )
    sample_limit: int = Field(default=500, ge=1, description="Most teacher answers to use")
    teacher_confidence_threshold: float = Field(default=0.8, ge=0, le=1)
    epochs: int = Field(default=20, ge=1, description="Most epochs over the examples")
    batch_size: int = Field(default=32, ge=1, description="Windows per batch")
    validation_split: float = Field(default=0.2, gt=0, lt=1, description="Examples held out")
    max_minutes: float = Field(default=5.0, gt=0, description="Wall-clock budget")


def _retrain(
    context: dg.AssetExecutionContext,
    change: str,
    config: FineTuneConfig | DistillationConfig,
    thunder: ThunderHome,
    tracking: MlflowTracking,
    queries: QueryLogStore,
    select: Callable[[object, str], list[TrainingExample]],
    trainer: Callable,
    after_release: Callable[[object, list[TrainingExample]], dict] | None = None,
):
    """Select examples, train, export and verify, and release a challenger when every check
    passes. Too little data or no champion fails the step without a retry."""
    from thunder_dagster.modeling.exports import export_and_verify
    from thunder_dagster.modeling.retraining import NotEnoughDataError, RetrainSettings

    home = thunder.home()
    agent_id = context.partition_key
    champion = read_pointer(home.deployments_dir(agent_id))
    if champion is None:
        raise dg.Failure(
            f"{agent_id} has no champion to {change}: deploy one first", allow_retries=False
        )
    with queries.open() as store:
        examples = select(store, agent_id)
        context.log.info(f"{change} of {agent_id} {champion.version} on {len(examples)} examples")
        tracker = tracking.tracker(context.log.warning)
        run = tracker.start_run(
            f"{change} {agent_id}",
            {
                "agent_id": agent_id,
                "parent_version": champion.version,
                "dagster_run_id": context.run.run_id,
                "change": change,
            },
        )
        tracker.log_params(run, config.model_dump() | {"examples": len(examples)})

        epoch_ended = epoch_reporter(
            context.log.info, tracker, run, config.epochs, config.max_minutes
        )
        settings = RetrainSettings(
            learning_rate=config.learning_rate,
            epochs=config.epochs,
            batch_size=config.batch_size,
            validation_split=config.validation_split,
            max_seconds=config.max_minutes * 60,
            seed=config.seed,
        )
        build = home.models_dir(agent_id) / "builds" / f"{change}-{context.run.run_id[:8]}"
        try:
            trained, data = trainer(
                Path(champion.model_dir), examples, build, settings, epoch_ended
            )
        except NotEnoughDataError as error:
            tracker.end_run(run, "KILLED")
            raise dg.Failure(str(error), allow_retries=False) from error
        report: ExportReport = export_and_verify(trained, data, build, with_latency=False)
        metadata = {
            "parent_version": champion.version,
            "examples": len(examples),
            "test_loss": dg.MetadataValue.float(report.onnx_test_loss),
            "unigram_loss": dg.MetadataValue.float(report.unigram_loss),
            "family": report.family,
            "build": dg.MetadataValue.path(str(build)),
        }
        tracker.log_metrics(run, {"onnx_test_loss": report.onnx_test_loss})
        if report.passed:
            move = release(
                home.models_dir(agent_id),
                home.deployments_dir(agent_id),
                agent_id,
                build,
                report.onnx_sha256,
                tracking.registry(tracker),
                change=change,
                role="challenger",
                step_sha256=report.step_sha256,
                run_id=run,
            )
            context.log.info(f"deployed {move.describe()}")
            metadata["challenger_version"] = move.deployment.version
            metadata |= _test_challenger(context, store, champion.version, move, config)
            metadata |= _score_pair(context, home, agent_id)
            if after_release is not None:
                metadata |= after_release(store, examples)
        else:
            failed = [check.name for check in report.checks if not check.passed]
            context.log.warning(f"{change} of {agent_id} failed {failed}: nothing is deployed")
            metadata["challenger_version"] = "none"
        tracker.end_run(run, "FINISHED" if report.passed else "FAILED")
        metadata |= links(mlflow_run=tracker.run_url(run))
    yield dg.Output(report, metadata=metadata)
    yield from check_results(report.checks)


def _score_pair(context, home, agent_id: str) -> dict:
    """The new challenger and the champion on the agent's documents' test split, the same text
    for both: what the low_quality alert compares (each card's own loss is on its own text)."""
    from thunder_dagster.deployments.gate import score_pair
    from thunder_dagster.documents.datasets import latest_dataset
    from thunder_dagster.modeling.text import dataset_documents, split_documents

    dataset = latest_dataset(home.processed_dir(agent_id))
    if dataset is None:
        return {}
    text = split_documents(dataset_documents(dataset.path)).test
    scores = score_pair(home.deployments_dir(agent_id), dataset.version, text)
    if scores is None:
        return {}
    context.log.info(
        f"on the documents' test split: challenger {scores.challenger_score:.4f}, champion "
        f"{scores.champion_score:.4f} nats/char"
    )
    return {
        "challenger_loss_on_documents": dg.MetadataValue.float(scores.challenger_score),
        "champion_loss_on_documents": dg.MetadataValue.float(scores.champion_score),
    }


def _test_challenger(context, store, champion: str, move, config: ChallengerConfig) -> dict:
    """Start the released challenger's A/B test; the one it replaces ends superseded (or
    inconclusive, out of days)."""
    from thunder_dagster.feedback.experiments import AbTestStore, replace_challenger_test

    test, ended = replace_challenger_test(
        AbTestStore(store.engine),
        context.partition_key,
        champion,
        move.deployment.version,
        f"run {context.run.run_id}",
        split=config.ab_split,
        max_days=config.ab_max_days,
    )
    context.log.info(
        f"A/B test {test.id}: {test.challenger_version} answers {test.split:.0%} of users for up "
        f"to {test.max_days} days"
        + (f"; test {ended.id} of {ended.challenger_version} ended {ended.status}" if ended else "")
    )
    return {
        "ab_test": test.id,
        "ab_test_ends_by": test.ends_by.isoformat(),
        "replaced_test": f"{ended.id} ({ended.status})" if ended else "none",
    }


def _export_checks(asset: str) -> list[dg.AssetCheckSpec]:
    return [dg.AssetCheckSpec(name, asset=asset, blocking=True) for name in EXPORT_CHECKS]


@dg.asset(
    group_name="retraining",
    kinds={"keras", "onnx", "mlflow"},
    partitions_def=agents,
    pool=TRAINING_POOL,
    check_specs=_export_checks("fine_tuned_model"),
)
def fine_tuned_model(
    context: dg.AssetExecutionContext,
    config: FineTuneConfig,
    thunder: ThunderHome,
    tracking: MlflowTracking,
    queries: QueryLogStore,
):
    """The champion trained further on its well-rated answers, released as the challenger.

    Answers scored 4 or more and not used before; a patch version, released only when it
    passes the ONNX checks."""
    from thunder_dagster.modeling.retraining import fine_tune

    def mark(store, examples: list[TrainingExample]) -> dict:
        marked = store.mark_used([example.query_id for example in examples], context.run.run_id)
        context.log.info(f"{marked} query rows marked used_for_training by this run")
        return {"rows_marked_used": marked}

    yield from _retrain(
        context,
        "fine_tune",
        config,
        thunder,
        tracking,
        queries,
        lambda store, agent_id: store.fine_tune_examples(agent_id, config.dataset_limit),
        fine_tune,
        after_release=mark,
    )


@dg.asset(
    group_name="retraining",
    kinds={"keras", "onnx", "mlflow"},
    partitions_def=agents,
    pool=TRAINING_POOL,
    check_specs=_export_checks("distilled_model"),
)
def distilled_model(
    context: dg.AssetExecutionContext,
    config: DistillationConfig,
    thunder: ThunderHome,
    tracking: MlflowTracking,
    queries: QueryLogStore,
):
    """A smaller student trained on the teacher's confident answers, released as the challenger.

    Teacher answers of confidence 0.8 or more; released only when it passes the ONNX checks."""
    from thunder_dagster.modeling.retraining import distill

    yield from _retrain(
        context,
        "distillation",
        config,
        thunder,
        tracking,
        queries,
        lambda store, agent_id: store.distillation_examples(
            agent_id, config.teacher_confidence_threshold, config.sample_limit
        ),
        distill,
    )
