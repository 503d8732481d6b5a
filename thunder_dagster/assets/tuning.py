import json
import os
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path

import dagster as dg
from pydantic import Field

from thunder_dagster.documents.datasets import TrainingDataset
from thunder_dagster.modeling.search import SearchResult, SearchSettings
from thunder_dagster.modeling.space import CONTEXT_LENGTHS, FAMILIES
from thunder_dagster.modeling.training import Budget
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.resources.tuning import TuningStorage
from thunder_dagster.runtime.configs import DeadlineConfig
from thunder_dagster.runtime.errors import failing_on
from thunder_dagster.runtime.executors import search_parallelism
from thunder_dagster.runtime.metadata import image, links, markdown_table, tracking_state
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.runtime.policies import TRAINING_POOL, TRAINING_RETRY
from thunder_dagster.settings import TRIAL_STALE_SECONDS, whole_number
from thunder_dagster.tracking.progress import RunLogObserver


class SearchConfig(DeadlineConfig):
    trials: int = Field(default=12, ge=1, description="Finished trials the study should hold")
    minutes: float = Field(default=4.0, gt=0, description="Wall-clock budget of the search")
    epochs: int = Field(default=3, ge=1, description="Epochs per trial")
    steps_per_epoch: int = Field(default=100, ge=1, description="Batches per epoch")
    batch_size: int = Field(default=128, ge=1, description="Windows per batch")
    validation_windows: int = Field(default=256, ge=1, description="Validation windows per epoch")
    validation_fraction: float = Field(
        default=0.1,
        gt=0,
        lt=0.5,
        description="Share of the text held out for validation, and as much again for test "
        "(whole documents from 10 documents on, else the end of the text)",
    )
    families: list[str] = Field(default=list(FAMILIES), description="Model families to search")
    context_lengths: list[int] = Field(
        default=list(CONTEXT_LENGTHS), description="Contexts to search"
    )
    prune: bool = Field(default=True, description="Stop trials worse than the median early")
    seed: int = Field(default=0, description="Seed of the sampler and of every trial")
    stale_after_seconds: int = Field(
        default=whole_number(TRIAL_STALE_SECONDS, least=3),
        ge=3,
        description="Seconds a trial may go without a heartbeat (one every third of them) "
        "before it counts as dead, its worker killed, and runs again. Default: "
        "THUNDER_TRIAL_STALE_SECONDS, else 30",
    )
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
                f"families: {unknown or 'none given'} not among {list(FAMILIES)}; pick from those"
            )
        return SearchSettings(
            trials=self.trials,
            minutes=self.seconds() / 60,
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
            heartbeat_seconds=max(1, self.stale_after_seconds // 3),
            stale_after_seconds=self.stale_after_seconds,
        )


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
    from thunder_dagster.modeling.text import DatasetTooSmallError, encoded_dataset
    from thunder_dagster.modeling.tuning import open_study, study_name

    home = thunder.home()
    agent_id = context.partition_key
    settings = config.settings()
    with failing_on(DatasetTooSmallError):
        data = encoded_dataset(training_dataset, config.validation_fraction)
    name = study_name(agent_id, training_dataset.version, settings)
    storage = tuning.storage_url()
    if config.parallel > 1 and storage.startswith("sqlite"):
        context.log.warning(
            f"parallel: {config.parallel} search steps on SQLite ({tuning.display_url()}); "
            "Optuna advises a server database for parallel studies. Set THUNDER_OPTUNA_URL."
        )
    open_study(storage, name, settings, data.vocab_size)
    tracker = tracking.tracker(context.log.warning)
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
        f"study {name} on {tuning.display_url()}: {settings.trials} trials within "
        f"{settings.minutes} min in {config.parallel} step(s); {len(data.train)} training and "
        f"{len(data.validation)} validation and {len(data.test)} test characters, "
        f"{data.vocab_size} tokens"
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


@dg.op(pool=TRAINING_POOL, retry_policy=TRAINING_RETRY)
def search_trials(
    context: dg.OpExecutionContext,
    plan: SearchPlan,
    index: int,
    tracking: MlflowTracking,
    tuning: TuningStorage,
) -> SearchStep:
    """Run trials of the shared study until it holds its trials or the minutes run out; a
    retried step resumes the study, and a trial its dead attempt held is run again."""
    from thunder_dagster.modeling.text import DatasetTooSmallError, encoded_dataset
    from thunder_dagster.modeling.tuning import search

    started = time.monotonic()
    with failing_on(DatasetTooSmallError):
        data = encoded_dataset(plan.dataset, plan.validation_fraction)
    tracker = tracking.tracker(context.log.warning)
    settled = search(
        data,
        plan.settings,
        tuning.storage_url(),
        plan.study,
        Path(plan.checkpoint_dir),
        RunLogObserver(context.log.info, tracker, plan.mlflow_parent, plan.settings),
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
    tracking: MlflowTracking,
    tuning: TuningStorage,
) -> dg.Output[SearchResult]:
    """The study's trials and its best, with the tables and the plot the UI shows."""
    from thunder_dagster.modeling.plots import optimization_history
    from thunder_dagster.modeling.tuning import study_result

    tracker = tracking.tracker(context.log.warning)
    ran_now = [number for step in steps for number in step.settled]
    try:
        result = study_result(
            tuning.storage_url(), plan.study, plan.settings, Path(plan.checkpoint_dir), ran_now
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
        "storage": tuning.display_url(),
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
        "mlflow_tracking": tracking_state(tracker),
        **links(mlflow_run=tracker.run_url(plan.mlflow_parent)),
    }
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
    """The Optuna TPE search over model architectures and training settings, one per dataset.

    Family, context, learning rate, width, depth, dropout and activation; run by `parallel`
    search steps on one shared study, which a retried run resumes. The best trials' models are
    kept under models/<agent>/trials/<study>/."""
    plan, steps = plan_search(training_dataset)
    settled = steps.map(lambda index: search_trials(plan, index))
    return collect_search(plan, settled.collect())
