import time

import dagster as dg
from pydantic import Field

from thunder_dagster.assets.partitions import agents
from thunder_dagster.assets.plots import image
from thunder_dagster.assets.tuning import TRAINING_RETRY, encoded_dataset
from thunder_dagster.documents.datasets import TrainingDataset
from thunder_dagster.modeling.models import TrainedModel, save_model, train_best
from thunder_dagster.modeling.search import SearchResult
from thunder_dagster.modeling.training import Budget, Epoch
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.tracking import MlflowTracking


class TrainingConfig(dg.Config):
    epochs: int = Field(default=50, ge=1, description="Most epochs of the final training")
    minutes: float = Field(default=4.0, gt=0, description="Wall-clock budget of the training")
    steps_per_epoch: int = Field(default=100, ge=1, description="Batches per epoch")
    batch_size: int = Field(default=128, ge=1, description="Windows per batch")
    validation_windows: int = Field(default=256, ge=1, description="Validation windows per epoch")
    patience: int = Field(
        default=5, ge=1, description="Stop after this many epochs without a better validation loss"
    )
    warm_start: bool = Field(
        default=True, description="Continue from the best trial's weights when they were kept"
    )
    seed: int = Field(default=0, description="Seed of the weights and the batches")


def epoch_reporter(context, tracker, run: str | None, epochs: int, minutes: float | None = None):
    """A callback that puts each finished epoch in the run log and in the MLflow run, with the
    best loss so far and the time left (by the epochs' pace, capped by the minutes)."""
    started = time.monotonic()
    best = float("inf")

    def epoch_ended(epoch: Epoch) -> None:
        nonlocal best
        best = min(best, epoch.validation_loss)
        elapsed = time.monotonic() - started
        left = elapsed / (epoch.number + 1) * (epochs - epoch.number - 1)
        if minutes is not None:
            left = min(left, max(0.0, minutes * 60 - elapsed))
        context.log.info(
            f"epoch {epoch.number + 1}/{epochs}: validation loss "
            f"{epoch.validation_loss:.4f} nats/char, train loss {epoch.train_loss:.4f}, "
            f"{epoch.seconds:.1f} s; best so far {best:.4f}, at most {left / 60:.1f} min left"
        )
        tracker.log_metrics(
            run,
            {"validation_loss": epoch.validation_loss, "train_loss": epoch.train_loss},
            step=epoch.number,
        )

    return epoch_ended


@dg.asset(
    group_name="training",
    kinds={"keras", "mlflow"},
    partitions_def=agents,
    pool="training",
    retry_policy=TRAINING_RETRY,
)
def keras_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    tpe_trials: SearchResult,
    training_dataset: TrainingDataset,
    thunder: ThunderHome,
    tracking: MlflowTracking,
) -> dg.Output[TrainedModel]:
    """The search's best configuration trained on the training split: model.keras and card.json
    under models/<agent>/builds/<dataset version>-<run>/."""
    from thunder_dagster.modeling.plots import loss_curves

    home = thunder.home()
    agent_id = context.partition_key
    data = encoded_dataset(training_dataset, tpe_trials.validation_fraction)
    tracker = tracking.tracker(home, context.log.warning)
    run = tracker.start_run(
        f"keras_model {agent_id}",
        {
            "agent_id": agent_id,
            "dataset_version": training_dataset.version,
            "study": tpe_trials.study_name,
            "dagster_run_id": context.run.run_id,
        },
    )
    tracker.log_params(run, tpe_trials.best_params | config.model_dump())

    epoch_ended = epoch_reporter(context, tracker, run, config.epochs, config.minutes)
    budget = Budget(
        epochs=config.epochs,
        steps_per_epoch=config.steps_per_epoch,
        batch_size=config.batch_size,
        max_seconds=config.minutes * 60,
        validation_windows=config.validation_windows,
        patience=config.patience,
        decay_to=0.1,
    )
    try:
        model, history, warm = train_best(
            tpe_trials, data, budget, config.seed, config.warm_start, epoch_ended
        )
    except Exception:
        tracker.end_run(run, "FAILED")
        raise
    build = f"{training_dataset.version}-{context.run.run_id[:8]}"
    model_dir = home.models_dir(agent_id) / "builds" / build
    trained = save_model(
        model,
        model_dir,
        agent_id,
        tpe_trials,
        data,
        history.epochs,
        history.best_loss,
        training_dataset.version,
        warm,
        run,
    )
    plot = loss_curves(
        trained.epochs, trained.unigram_loss, title=f"{agent_id}: {trained.family} model"
    )
    (model_dir / "loss_curves.png").write_bytes(plot)
    tracker.log_metrics(
        run, {"best_validation_loss": trained.validation_loss, "unigram_loss": trained.unigram_loss}
    )
    tracker.log_artifacts(run, model_dir, "build")
    tracker.end_run(run)
    context.log.info(
        f"{trained.family} model: validation loss {trained.validation_loss:.4f} nats/char "
        f"(unigram baseline {trained.unigram_loss:.4f}), the best of {len(history.epochs)} epochs, "
        f"{trained.seconds:.0f} s" + (f", continued from {warm}" if warm else "")
    )
    metadata = {
        "family": trained.family,
        "params": dg.MetadataValue.json(trained.params),
        "validation_loss": dg.MetadataValue.float(trained.validation_loss),
        "unigram_loss": dg.MetadataValue.float(trained.unigram_loss),
        "epochs": len(history.epochs),
        "train_seconds": dg.MetadataValue.float(round(trained.seconds, 1)),
        "warm_started_from": warm or "none",
        "model_path": dg.MetadataValue.path(str(trained.keras_path)),
        "card_path": dg.MetadataValue.path(str(trained.card_path)),
        "dataset_version": training_dataset.version,
        "loss_curves": image(plot, "loss curves"),
        "parameters": model.count_params(),
        "mlflow_tracking": "available" if tracker.available else f"off: {tracker.failure}",
    }
    url = tracker.run_url(run)
    if url:
        metadata["mlflow_run"] = dg.MetadataValue.url(url)
    return dg.Output(trained, metadata=metadata)
