import json
import time
from dataclasses import replace

import dagster as dg
from pydantic import Field

from thunder_dagster.assets.partitions import agents
from thunder_dagster.assets.plots import image, markdown_table
from thunder_dagster.documents.datasets import TrainingDataset
from thunder_dagster.modeling.search import (
    SearchResult,
    SearchSettings,
    TrialObserver,
    TrialRecord,
)
from thunder_dagster.modeling.text import EncodedText, dataset_documents, encode_documents
from thunder_dagster.modeling.training import Budget, Epoch
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.resources.tuning import TuningStorage
from thunder_dagster.tracking.experiments import Tracker

FAMILIES = ["gru", "conv", "transformer"]
# Seed 000's workers made three attempts; a retried step resumes the study where it stopped.
TRAINING_RETRY = dg.RetryPolicy(max_retries=2, delay=5)


class SearchConfig(dg.Config):
    trials: int = Field(default=12, ge=1, description="Finished trials the study should hold")
    minutes: float = Field(default=4.0, gt=0, description="Wall-clock budget of the search")
    epochs: int = Field(default=3, ge=1, description="Epochs per trial")
    steps_per_epoch: int = Field(default=100, ge=1, description="Batches per epoch")
    batch_size: int = Field(default=128, ge=1, description="Windows per batch")
    validation_windows: int = Field(default=256, ge=1, description="Validation windows per epoch")
    validation_fraction: float = Field(
        default=0.1, gt=0, lt=1, description="Share held out at the end of every document"
    )
    families: list[str] = Field(default=FAMILIES, description="Model families to search")
    context_lengths: list[int] = Field(default=[32, 64, 128], description="Contexts to search")
    prune: bool = Field(default=True, description="Stop trials worse than the median early")
    seed: int = Field(default=0, description="Seed of the sampler and of every trial")

    def settings(self) -> SearchSettings:
        unknown = sorted(set(self.families) - set(FAMILIES))
        if unknown or not self.families:
            raise dg.Failure(
                f"families: {unknown or 'none given'} not among {FAMILIES}; pick from those"
            )
        return SearchSettings(
            trials=self.trials,
            minutes=self.minutes,
            budget=Budget(
                epochs=self.epochs,
                steps_per_epoch=self.steps_per_epoch,
                batch_size=self.batch_size,
                validation_windows=self.validation_windows,
            ),
            families=tuple(self.families),
            context_lengths=tuple(self.context_lengths),
            seed=self.seed,
            prune=self.prune,
        )


def encoded_dataset(dataset: TrainingDataset, validation_fraction: float) -> EncodedText:
    texts = dataset_documents(dataset.path)
    data = encode_documents(texts, validation_fraction)
    if len(data.validation) < 200:
        raise dg.Failure(
            f"agent {dataset.agent_id}: dataset {dataset.version} ({dataset.path}) holds "
            f"{dataset.characters} characters; the held-out {validation_fraction:.0%} is "
            f"{len(data.validation)} characters, too few to validate a model. Upload more "
            "documents."
        )
    return data


class RunLogObserver(TrialObserver):
    """A line per epoch and per trial in the run log, and a child MLflow run per trial."""

    def __init__(self, log, tracker: Tracker, parent: str | None, settings: SearchSettings):
        self.log = log
        self.tracker = tracker
        self.parent = parent
        self.settings = settings
        self.started = time.monotonic()
        self.best: float | None = None
        self.runs: dict[int, str | None] = {}
        self.done = 0

    def _progress(self) -> str:
        elapsed = time.monotonic() - self.started
        left = self.settings.minutes * 60 - elapsed if self.settings.minutes else None
        if self.done:
            by_trials = elapsed / self.done * (self.settings.trials - self.done)
            left = by_trials if left is None else min(left, by_trials)
        best = "none yet" if self.best is None else f"{self.best:.4f}"
        eta = "" if left is None else f", about {max(0.0, left) / 60:.1f} min left"
        return f"best so far {best}; {elapsed / 60:.1f} min elapsed{eta}"

    def trial_started(self, number: int, params: dict) -> None:
        self.log.info(f"trial {number} ({self.done + 1}/{self.settings.trials}) starts: {params}")
        run = self.tracker.start_run(f"trial {number}", {"trial": str(number)}, self.parent)
        self.tracker.log_params(run, params)
        self.runs[number] = run

    def epoch_ended(self, number: int, epoch: Epoch) -> None:
        self.log.info(
            f"trial {number} ({self.done + 1}/{self.settings.trials}) epoch "
            f"{epoch.number + 1}/{self.settings.budget.epochs}: validation loss "
            f"{epoch.validation_loss:.4f}, train loss {epoch.train_loss:.4f}, "
            f"{epoch.seconds:.1f} s; {self._progress()}"
        )
        self.tracker.log_metrics(
            self.runs.get(number),
            {"validation_loss": epoch.validation_loss, "train_loss": epoch.train_loss},
            step=epoch.number,
        )

    def trial_finished(self, record: TrialRecord) -> None:
        self.done += 1
        if record.state == "COMPLETE" and record.value is not None:
            self.best = record.value if self.best is None else min(self.best, record.value)
        value = "-" if record.value is None else f"{record.value:.4f}"
        reason = f" ({record.reason})" if record.reason else ""
        self.log.info(f"trial {record.number} {record.state}{reason}: {value}; {self._progress()}")
        run = self.runs.get(record.number)
        if record.value is not None:
            self.tracker.log_metrics(run, {"final_validation_loss": record.value})
        self.tracker.end_run(run, "FINISHED" if record.state != "FAIL" else "FAILED")


def _trials_table(result: SearchResult) -> dg.MarkdownMetadataValue:
    rows = [
        [
            trial.number,
            trial.state,
            "-" if trial.value is None else f"{trial.value:.4f}",
            trial.params.get("family", "-"),
            trial.params.get("context_length", "-"),
            trial.params.get("hidden_size", "-"),
            trial.params.get("layers", "-"),
            "-" if "learning_rate" not in trial.params else f"{trial.params['learning_rate']:.2e}",
            "-" if "dropout" not in trial.params else f"{trial.params['dropout']:.2f}",
            trial.params.get("activation", "-"),
            "-" if trial.seconds is None else f"{trial.seconds:.0f}",
        ]
        for trial in result.trials
    ]
    return markdown_table(
        [
            "trial",
            "state",
            "validation loss",
            "family",
            "context",
            "hidden",
            "layers",
            "learning rate",
            "dropout",
            "activation",
            "seconds",
        ],
        rows,
    )


@dg.asset(
    group_name="training",
    kinds={"optuna", "keras", "mlflow"},
    partitions_def=agents,
    pool="training",
    retry_policy=TRAINING_RETRY,
)
def tpe_trials(
    context: dg.AssetExecutionContext,
    config: SearchConfig,
    training_dataset: TrainingDataset,
    thunder: ThunderHome,
    tracking: MlflowTracking,
    tuning: TuningStorage,
) -> dg.Output[SearchResult]:
    """The Optuna TPE study over model family, context and seed 002's space, one per dataset
    version; a retried run resumes it. Best trials' models: models/<agent>/trials/<study>/."""
    from thunder_dagster.modeling.plots import optimization_history
    from thunder_dagster.modeling.tuning import run_search, study_name

    home = thunder.home()
    agent_id = context.partition_key
    settings = config.settings()
    data = encoded_dataset(training_dataset, config.validation_fraction)
    name = study_name(agent_id, training_dataset.version, settings)
    tracker = tracking.tracker(home, context.log.warning)
    parent = tracker.start_run(
        f"tpe_trials {agent_id}",
        {
            "agent_id": agent_id,
            "dataset_version": training_dataset.version,
            "study": name,
            "dagster_run_id": context.run.run_id,
        },
    )
    tracker.log_params(parent, config.model_dump() | {"vocab_size": data.vocab_size})
    context.log.info(
        f"study {name} on {tuning.display_url(home)}: {settings.trials} trials within "
        f"{settings.minutes} min; {len(data.train)} training and {len(data.validation)} "
        f"validation characters, {data.vocab_size} tokens"
    )
    try:
        result = run_search(
            data,
            settings,
            tuning.storage_url(home),
            name,
            home.models_dir(agent_id) / "trials" / name,
            RunLogObserver(context.log, tracker, parent, settings),
        )
    except Exception:
        tracker.end_run(parent, "FAILED")
        raise
    result = replace(result, validation_fraction=config.validation_fraction)
    tracker.log_metrics(parent, {"best_validation_loss": result.best_value})
    tracker.end_run(parent)
    plot = optimization_history(
        [{"number": t.number, "state": t.state, "value": t.value} for t in result.trials],
        title=f"{agent_id}: TPE optimization history",
    )
    metadata = {
        "study": name,
        "storage": tuning.display_url(home),
        "dataset_version": training_dataset.version,
        "best_trial": result.best_number,
        "best_validation_loss": dg.MetadataValue.float(result.best_value),
        "best_params": dg.MetadataValue.json(result.best_params),
        "trial_states": dg.MetadataValue.json(result.counts),
        "trials_run_now": len(result.ran_now),
        "trials": _trials_table(result),
        "optimization_history": image(plot, "optimization history"),
        "mlflow_tracking": "available" if tracker.available else f"off: {tracker.failure}",
    }
    url = tracker.run_url(parent)
    if url:
        metadata["mlflow_run"] = dg.MetadataValue.url(url)
    context.log.info(f"best trial {result.best_number}: {json.dumps(result.best_params)}")
    return dg.Output(result, metadata=metadata)
