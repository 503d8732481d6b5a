import dagster as dg
from pydantic import Field

from thunder_dagster.documents.datasets import TrainingDataset
from thunder_dagster.modeling.cards import LOSS_CURVES_NAME
from thunder_dagster.modeling.models import TrainedModel, save_model, train_best
from thunder_dagster.modeling.search import SearchResult
from thunder_dagster.modeling.training import Budget
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.runtime.configs import DeadlineConfig
from thunder_dagster.runtime.errors import failing_on
from thunder_dagster.runtime.metadata import image, links, tracking_state
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.runtime.policies import TRAINING_POOL, TRAINING_RETRY
from thunder_dagster.tasks.agents import AgentSettingsError, read_task
from thunder_dagster.tracking.progress import epoch_reporter


class TrainingConfig(DeadlineConfig):
    epochs: int = Field(default=50, ge=1, description="Most epochs of the final training")
    minutes: float = Field(default=4.0, gt=0, description="Wall-clock budget of the training")
    steps_per_epoch: int = Field(default=100, ge=1, description="Batches per epoch")
    batch_size: int = Field(default=128, ge=1, description="Windows per batch")
    validation_windows: int = Field(default=256, ge=1, description="Validation windows per epoch")
    patience: int = Field(
        default=5, ge=1, description="Stop after this many epochs without a better validation loss"
    )
    dropout_step: float = Field(
        default=0.1,
        ge=0,
        le=0.3,
        description="When patience runs out with time left and the model overfits, its dropout "
        "rises by this much (to 0.3 at most) and training goes on from the best weights; 0: "
        "patience stops the training",
    )
    warm_start: bool = Field(
        default=True, description="Continue from the best trial's weights when they were kept"
    )
    seed: int = Field(default=0, description="Seed of the weights and the batches")

    def budget(self) -> Budget:
        """The final training's budget as it starts (the benchmark trains with it too)."""
        return Budget(
            epochs=self.epochs,
            steps_per_epoch=self.steps_per_epoch,
            batch_size=self.batch_size,
            max_seconds=self.seconds(),
            validation_windows=self.validation_windows,
            patience=self.patience,
            decay_to=0.1,
            dropout_step=self.dropout_step or None,
        )


@dg.asset(
    group_name="training",
    kinds={"keras", "mlflow"},
    partitions_def=agents,
    pool=TRAINING_POOL,
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
    """The search's best configuration trained on the training split.

    model.keras and its card under models/<agent>/builds/<dataset version>-<run>/, with loss
    curves and the MLflow run."""
    from thunder_dagster.modeling.plots import loss_curves
    from thunder_dagster.modeling.text import DatasetTooSmallError, encoded_dataset

    home = thunder.home()
    agent_id = context.partition_key
    with failing_on(DatasetTooSmallError, AgentSettingsError):
        data = encoded_dataset(training_dataset, tpe_trials.validation_fraction)
        task = read_task(home.agent_dir(agent_id))
    tracker = tracking.tracker(context.log.warning)
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

    budget = config.budget()
    epoch_ended = epoch_reporter(
        context.log.info, tracker, run, config.epochs, budget.max_seconds / 60
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
        task,
    )
    plot = loss_curves(
        trained.epochs,
        trained.unigram_loss,
        title=f"{agent_id}: {trained.family} model",
        test_loss=trained.test_loss,
    )
    (model_dir / LOSS_CURVES_NAME).write_bytes(plot)
    tracker.log_metrics(
        run,
        {
            "best_validation_loss": trained.validation_loss,
            "test_loss": trained.test_loss,
            "unigram_loss": trained.unigram_loss,
        },
    )
    tracker.log_artifacts(run, model_dir, "build")
    tracker.end_run(run)
    context.log.info(
        f"{trained.family} model: test loss {trained.test_loss:.4f} nats/char (unigram "
        f"baseline {trained.unigram_loss:.4f}); validation loss {trained.validation_loss:.4f}, "
        f"the best of {len(history.epochs)} epochs, "
        f"{trained.seconds:.0f} s" + (f", continued from {warm}" if warm else "")
    )
    metadata = {
        "task": task,
        "family": trained.family,
        "params": dg.MetadataValue.json(trained.params),
        "test_loss": dg.MetadataValue.float(trained.test_loss),
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
        "mlflow_tracking": tracking_state(tracker),
        **links(mlflow_run=tracker.run_url(run)),
    }
    return dg.Output(trained, metadata=metadata)
