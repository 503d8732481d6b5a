import json
import os
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path

import dagster as dg
from pydantic import Field

from thunder_dagster.assets.partitions import agents
from thunder_dagster.assets.plots import image, markdown_table
from thunder_dagster.documents.datasets import TrainingDataset
from thunder_dagster.executors import search_parallelism
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
    parallel: int = Field(
        default=search_parallelism(),
        ge=1,
        description="Search steps that run trials of the one study at once; the Celery executor "
        "spreads them over its workers. Needs a server database for the study "
        "(THUNDER_OPTUNA_URL) and as many slots in the training pool. Default: THUNDER_WORKERS "
        "on the Celery executor, else 1.",
    )

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
    """A line per epoch and per trial in the run log, and a child MLflow run per trial.

    The counts are the whole study's, so parallel search steps each report the shared progress.
    """

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
            # The study's pace: every step started at about the same time.
            by_trials = elapsed / self.done * (self.settings.trials - self.done)
            left = by_trials if left is None else min(left, by_trials)
        best = "none yet" if self.best is None else f"{self.best:.4f}"
        eta = "" if left is None else f", about {max(0.0, left) / 60:.1f} min left"
        return f"best so far {best}; {elapsed / 60:.1f} min elapsed{eta}"

    def _of(self) -> str:
        return f"{min(self.done + 1, self.settings.trials)}/{self.settings.trials}"

    def trial_started(self, number: int, params: dict) -> None:
        self.log.info(f"trial {number} ({self._of()}) starts: {params}")
        run = self.tracker.start_run(f"trial {number}", {"trial": str(number)}, self.parent)
        self.tracker.log_params(run, params)
        self.runs[number] = run

    def epoch_ended(self, number: int, epoch: Epoch) -> None:
        self.log.info(
            f"trial {number} ({self._of()}) epoch "
            f"{epoch.number + 1}/{self.settings.budget.epochs}: validation loss "
            f"{epoch.validation_loss:.4f}, train loss {epoch.train_loss:.4f}, "
            f"{epoch.seconds:.1f} s; {self._progress()}"
        )
        self.tracker.log_metrics(
            self.runs.get(number),
            {"validation_loss": epoch.validation_loss, "train_loss": epoch.train_loss},
            step=epoch.number,
        )

    def trial_finished(self, record: TrialRecord, counted: int) -> None:
        self.done = max(self.done, counted)
        if record.state == "COMPLETE" and record.value is not None:
            self.best = record.value if self.best is None else min(self.best, record.value)
        value = "-" if record.value is None else f"{record.value:.4f}"
        reason = f" ({record.reason})" if record.reason else ""
        self.log.info(
            f"trial {record.number} {record.state}{reason}: {value}; "
            f"{counted}/{self.settings.trials} trials done; {self._progress()}"
        )
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


@dataclass(frozen=True)
class SearchPlan:
    """What every search step of one materialization works on."""

    agent_id: str
    dataset: TrainingDataset
    settings: SearchSettings
    validation_fraction: float
    study: str
    checkpoint_dir: str
    mlflow_parent: str | None
    steps: int


@dataclass(frozen=True)
class SearchStep:
    """What one search step settled, and where it ran."""

    index: int
    settled: list[int]
    host: str
    seconds: float


@dg.op(out={"plan": dg.Out(SearchPlan), "steps": dg.DynamicOut(int)})
def plan_search(
    context: dg.OpExecutionContext,
    config: SearchConfig,
    training_dataset: TrainingDataset,
    thunder: ThunderHome,
    tracking: MlflowTracking,
    tuning: TuningStorage,
):
    """Create the study (or find it, to resume) and the MLflow parent run; fan out the steps."""
    from thunder_dagster.modeling.tuning import open_study, study_name

    home = thunder.home()
    agent_id = context.partition_key
    settings = config.settings()
    data = encoded_dataset(training_dataset, config.validation_fraction)
    name = study_name(agent_id, training_dataset.version, settings)
    storage = tuning.storage_url(home)
    if config.parallel > 1 and storage.startswith("sqlite"):
        context.log.warning(
            f"parallel: {config.parallel} search steps on SQLite ({tuning.display_url(home)}); "
            "Optuna advises a server database for parallel studies. Set THUNDER_OPTUNA_URL."
        )
    open_study(storage, name, settings, data.vocab_size)
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
        f"{settings.minutes} min in {config.parallel} step(s); {len(data.train)} training and "
        f"{len(data.validation)} validation characters, {data.vocab_size} tokens"
    )
    yield dg.Output(
        SearchPlan(
            agent_id=agent_id,
            dataset=training_dataset,
            settings=settings,
            validation_fraction=config.validation_fraction,
            study=name,
            checkpoint_dir=str(home.models_dir(agent_id) / "trials" / name),
            mlflow_parent=parent,
            steps=config.parallel,
        ),
        "plan",
    )
    for index in range(config.parallel):
        yield dg.DynamicOutput(index, output_name="steps", mapping_key=str(index))


@dg.op(pool="training", retry_policy=TRAINING_RETRY)
def search_trials(
    context: dg.OpExecutionContext,
    plan: SearchPlan,
    index: int,
    thunder: ThunderHome,
    tracking: MlflowTracking,
    tuning: TuningStorage,
) -> SearchStep:
    """Run trials of the shared study until it holds its trials or the minutes run out; a
    retried step resumes the study, and a trial its dead attempt held is run again."""
    from thunder_dagster.modeling.tuning import search

    home = thunder.home()
    started = time.monotonic()
    data = encoded_dataset(plan.dataset, plan.validation_fraction)
    tracker = tracking.tracker(home, context.log.warning)
    settled = search(
        data,
        plan.settings,
        tuning.storage_url(home),
        plan.study,
        Path(plan.checkpoint_dir),
        RunLogObserver(context.log, tracker, plan.mlflow_parent, plan.settings),
        worker=index,
    )
    host = f"{socket.gethostname()}:{os.getpid()}"
    context.log.info(f"search step {index + 1}/{plan.steps} on {host} settled trials {settled}")
    return SearchStep(index, settled, host, time.monotonic() - started)


@dg.op
def collect_search(
    context: dg.OpExecutionContext,
    plan: SearchPlan,
    steps: list[SearchStep],
    thunder: ThunderHome,
    tracking: MlflowTracking,
    tuning: TuningStorage,
) -> dg.Output[SearchResult]:
    """The study's trials and its best, with the tables and the plot the UI shows."""
    from thunder_dagster.modeling.plots import optimization_history
    from thunder_dagster.modeling.tuning import study_result

    home = thunder.home()
    tracker = tracking.tracker(home, context.log.warning)
    ran_now = [number for step in steps for number in step.settled]
    try:
        result = study_result(
            tuning.storage_url(home), plan.study, plan.settings, Path(plan.checkpoint_dir), ran_now
        )
    except Exception:
        tracker.end_run(plan.mlflow_parent, "FAILED")
        raise
    result = replace(result, validation_fraction=plan.validation_fraction)
    tracker.log_metrics(plan.mlflow_parent, {"best_validation_loss": result.best_value})
    tracker.end_run(plan.mlflow_parent)
    plot = optimization_history(
        [{"number": t.number, "state": t.state, "value": t.value} for t in result.trials],
        title=f"{plan.agent_id}: TPE optimization history",
    )
    metadata = {
        "study": plan.study,
        "storage": tuning.display_url(home),
        "dataset_version": plan.dataset.version,
        "best_trial": result.best_number,
        "best_validation_loss": dg.MetadataValue.float(result.best_value),
        "best_params": dg.MetadataValue.json(result.best_params),
        "trial_states": dg.MetadataValue.json(result.counts),
        "trials_run_now": len(result.ran_now),
        "search_steps": markdown_table(
            ["step", "ran on", "trials settled", "minutes"],
            [
                [step.index + 1, step.host, len(step.settled), f"{step.seconds / 60:.1f}"]
                for step in sorted(steps, key=lambda step: step.index)
            ],
        ),
        "trials": _trials_table(result),
        "optimization_history": image(plot, "optimization history"),
        "mlflow_tracking": "available" if tracker.available else f"off: {tracker.failure}",
    }
    url = tracker.run_url(plan.mlflow_parent)
    if url:
        metadata["mlflow_run"] = dg.MetadataValue.url(url)
    context.log.info(f"best trial {result.best_number}: {json.dumps(result.best_params)}")
    return dg.Output(result, metadata=metadata)


def _search_ops(config: dict) -> dict:
    """The asset's config (the launchpad's form) is the planning step's."""
    return {"plan_search": {"config": config}}


@dg.graph_asset(
    group_name="training",
    kinds={"optuna", "keras", "mlflow"},
    partitions_def=agents,
    config=dg.ConfigMapping(_search_ops, SearchConfig.to_fields_dict()),
)
def tpe_trials(training_dataset: TrainingDataset) -> SearchResult:
    """The Optuna TPE study over model family, context and seed 002's space, one per dataset
    version, run by `parallel` search steps on the shared study; a retried run resumes it.
    Best trials' models: models/<agent>/trials/<study>/."""
    plan, steps = plan_search(training_dataset)
    settled = steps.map(lambda index: search_trials(plan, index))
    return collect_search(plan, settled.collect())
