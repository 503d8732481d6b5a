"""The TPE search: an Optuna study over the HyperModel's space, resumable from its storage.

The objective (trial, data) and the model builder (architectures.LanguageModelHyperModel) are
separate functions; the study lives in any SQLAlchemy database Optuna's RDBStorage accepts.
"""

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import optuna

from thunder_dagster.modeling.search import SearchResult, SearchSettings, TrialObserver, TrialRecord
from thunder_dagster.modeling.space import KNOWN_GOOD
from thunder_dagster.modeling.studies import LOST_ATTR, open_storage, release_lost
from thunder_dagster.modeling.text import EncodedText
from thunder_dagster.modeling.training import Epoch, History, NonFiniteLossError, train

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
FAILURE_ATTR = "failure"
SURPLUS_ATTR = "surplus"
REASONS = (FAILURE_ATTR, SURPLUS_ATTR, LOST_ATTR)
# How often a search step whose trials are done looks whether the others' last trials are.
WAIT_POLL_SECONDS = 1.0


class SurplusTrialError(RuntimeError):
    """Other workers have already taken every trial of the study's budget."""


def _counts(trial: optuna.trial.FrozenTrial) -> bool:
    return trial.state in FINISHED or (
        trial.state == optuna.trial.TrialState.FAIL and FAILURE_ATTR in trial.user_attrs
    )


def claim(trial: optuna.Trial, limit: int) -> bool:
    """Whether this trial is within the study's `limit` of trials.

    Workers sharing a study (PostgreSQL storage) each run `study.optimize`; a trial counts
    against the budget from the moment it runs, in the order of trial numbers, so the study
    ends with exactly `limit` trials that count however many workers raced for them.
    """
    ahead = sum(
        1
        for other in trial.study.get_trials(deepcopy=False)
        if other.number < trial.number
        and SURPLUS_ATTR not in other.user_attrs
        and (_counts(other) or other.state == optuna.trial.TrialState.RUNNING)
    )
    return ahead < limit


def study_name(agent_id: str, dataset_version: str, settings: SearchSettings) -> str:
    return f"{agent_id}-{dataset_version}-{settings.space_digest()}"


def _declared(settings: SearchSettings, vocab_size: int):
    """The HyperModel and the hyperparameters it declares, at their defaults."""
    from thunder_dagster.modeling.architectures import LanguageModelHyperModel, keras_tuner

    hypermodel = LanguageModelHyperModel(vocab_size, settings.families, settings.context_lengths)
    hp = keras_tuner.HyperParameters()
    hypermodel.declare(hp)
    return hypermodel, hp


def search_space(settings: SearchSettings, vocab_size: int) -> dict:
    """Optuna distributions read off the keras-tuner HyperModel's declared hyperparameters."""
    _, hp = _declared(settings, vocab_size)
    space = {}
    for parameter in hp.space:
        config = parameter.get_config()
        kind = type(parameter).__name__
        if kind == "Choice":
            space[parameter.name] = optuna.distributions.CategoricalDistribution(config["values"])
        elif kind == "Int":
            space[parameter.name] = optuna.distributions.IntDistribution(
                config["min_value"], config["max_value"], step=config["step"] or 1
            )
        elif kind == "Float":
            space[parameter.name] = optuna.distributions.FloatDistribution(
                config["min_value"], config["max_value"], log=config["sampling"] == "log"
            )
        else:
            raise ValueError(f"hyperparameter {parameter.name}: {kind} has no Optuna equivalent")
    return space


def suggest(trial: optuna.Trial, name: str, distribution):
    if isinstance(distribution, optuna.distributions.CategoricalDistribution):
        return trial.suggest_categorical(name, distribution.choices)
    if isinstance(distribution, optuna.distributions.IntDistribution):
        return trial.suggest_int(name, distribution.low, distribution.high, step=distribution.step)
    return trial.suggest_float(name, distribution.low, distribution.high, log=distribution.log)


def fits(params: dict, space: dict) -> bool:
    for name, distribution in space.items():
        value = params.get(name)
        if isinstance(distribution, optuna.distributions.CategoricalDistribution):
            if value not in distribution.choices:
                return False
        elif value is None or not distribution.low <= value <= distribution.high:
            return False
    return True


def build_model(params: dict, settings: SearchSettings, vocab_size: int):
    """The HyperModel's model for one set of values, compiled."""
    hypermodel, hp = _declared(settings, vocab_size)
    hp.values.update(params)
    return hypermodel.build(hp)


def objective(
    trial: optuna.Trial,
    data: EncodedText,
    settings: SearchSettings,
    space: dict,
    checkpoint_dir: Path,
    observer: TrialObserver,
    deadline: float | None,
    trainer: Callable[..., History] = train,
) -> float:
    """One trial: its parameters sampled, its model built and trained by `trainer` (the
    training loop; a test passes one that fails), its best validation loss returned."""
    from thunder_dagster.modeling.backend import keras

    if not claim(trial, settings.trials):
        trial.set_user_attr(SURPLUS_ATTR, f"the study already has its {settings.trials} trials")
        raise SurplusTrialError(f"trial {trial.number}: the study already has its trials")
    keras.backend.clear_session()
    keras.utils.set_random_seed(settings.seed + trial.number)
    params = {name: suggest(trial, name, distribution) for name, distribution in space.items()}
    observer.trial_started(trial.number, params)
    model = build_model(params, settings, data.vocab_size)

    def report(epoch: Epoch) -> None:
        observer.epoch_ended(trial.number, epoch)
        trial.report(epoch.validation_loss, epoch.number)
        trial.set_user_attr("validation_losses", [*losses, epoch.validation_loss])
        losses.append(epoch.validation_loss)
        if settings.prune and trial.should_prune():
            raise optuna.TrialPruned(f"epoch {epoch.number}: {epoch.validation_loss:.4f}")

    losses: list[float] = []
    try:
        history: History = trainer(
            model,
            data,
            params["context_length"],
            settings.budget,
            seed=settings.seed + trial.number,
            on_epoch=report,
            deadline=deadline,
            restore_best=True,
        )
    except NonFiniteLossError as error:
        trial.set_user_attr(FAILURE_ATTR, f"diverged: {error}")
        raise
    # The trial's value is its best epoch, whose weights the model now holds.
    value = history.best_loss
    trial.set_user_attr("seconds", history.seconds)
    completed = [t.value for t in trial.study.get_trials(deepcopy=False, states=FINISHED[:1])]
    if all(value < other for other in completed if other is not None):
        checkpoint_dir.mkdir(parents=True, exist_ok=True)
        model.save(checkpoint_dir / f"trial_{trial.number}.keras")
    return value


def _record(trial: optuna.trial.FrozenTrial) -> TrialRecord:
    attrs = trial.user_attrs
    seconds = trial.user_attrs.get("seconds")
    if seconds is None and trial.datetime_start and trial.datetime_complete:
        seconds = (trial.datetime_complete - trial.datetime_start).total_seconds()
    return TrialRecord(
        number=trial.number,
        state=trial.state.name,
        value=trial.value if trial.value is not None and math.isfinite(trial.value) else None,
        params=dict(trial.params),
        seconds=seconds,
        validation_losses=list(trial.user_attrs.get("validation_losses", [])),
        reason=next((attrs[name] for name in REASONS if name in attrs), ""),
    )


def _running(study: optuna.Study) -> bool:
    return bool(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))


def counted_trials(study: optuna.Study) -> int:
    """Trials that are done for good: completed, pruned, or failed by their own training.

    A trial failed because its worker went stale is not counted: its retry is queued instead.
    """
    return sum(_counts(trial) for trial in study.get_trials(deepcopy=False))


def _sampler(settings: SearchSettings, seed: int) -> optuna.samplers.TPESampler:
    return optuna.samplers.TPESampler(
        multivariate=True, seed=seed, n_startup_trials=max(2, min(10, settings.trials // 3))
    )


def _pruner(settings: SearchSettings) -> optuna.pruners.BasePruner:
    # Pruning from the first epoch on: a trial worse than the median at its first validation
    # rarely catches up, and its minutes go to the final training instead.
    if settings.prune:
        return optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0)
    return optuna.pruners.NopPruner()


def open_study(
    storage_url: str | optuna.storages.RDBStorage,
    name: str,
    settings: SearchSettings,
    vocab_size: int,
    worker: int | None = 0,
):
    """The study `name`, created with its known-good first trial if the storage lacks it.

    Only the process whose create won (the study name is unique in the storage) queues the
    known-good configuration, so search steps starting together never queue it twice. A process
    joining (or resuming) the study draws its own random stream, seeded by its `worker` number
    (None: by its process id): with the creator's seed it would suggest the creator's points
    again. Worker 0 continues the creator's stream, so a one-step search repeats exactly.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(storage_url, settings) if isinstance(storage_url, str) else storage_url
    try:
        study = optuna.create_study(
            study_name=name,
            storage=storage,
            direction="minimize",
            sampler=_sampler(settings, settings.seed),
            pruner=_pruner(settings),
        )
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(
            study_name=name,
            storage=storage,
            sampler=_sampler(settings, settings.seed + (os.getpid() if worker is None else worker)),
            pruner=_pruner(settings),
        )
    space = search_space(settings, vocab_size)
    known_good = next((params for params in KNOWN_GOOD if fits(params, space)), None)
    if known_good is not None:
        study.enqueue_trial(known_good)
    return study


_RAN: dict[tuple[str, str], list[int]] = {}


def search(
    data: EncodedText,
    settings: SearchSettings,
    storage_url: str,
    name: str,
    checkpoint_dir: Path,
    observer: TrialObserver | None = None,
    worker: int | None = None,
    trainer: Callable[..., History] = train,
) -> list[int]:
    """Run trials of the study until it holds `settings.trials` counted trials or the minutes
    run out; return the numbers of the trials this call settled.

    Any number of processes may call this on one study (in a server database): together they
    finish exactly `settings.trials`. A study of the same name continues where it stopped:
    finished trials are never redone, and a trial left running by a killed process is failed
    once stale and queued again.
    """
    observer = observer or TrialObserver()
    deadline = time.monotonic() + settings.minutes * 60 if settings.minutes is not None else None
    storage = open_storage(storage_url, settings)
    study = open_study(storage, name, settings, data.vocab_size, worker)
    space = search_space(settings, data.vocab_size)
    settled: list[int] = []
    # The storage ids of the trials this process ran for the study, in this call or in an
    # earlier one that failed (a step retried in the same process, as the in-process executor
    # retries it): what such an attempt left running is failed and queued again first.
    started = _RAN.setdefault((storage_url, name), [])
    release_lost(storage, study, started)

    def run(trial: optuna.Trial) -> float:
        started.append(trial._trial_id)
        return objective(trial, data, settings, space, checkpoint_dir, observer, deadline, trainer)

    def finished(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if SURPLUS_ATTR in trial.user_attrs:
            study.stop()
            return
        settled.append(trial.number)
        counted = counted_trials(study)
        observer.trial_finished(_record(trial), counted)
        if counted >= settings.trials:
            study.stop()

    def left() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    while (remaining := settings.trials - counted_trials(study)) > 0 and left() != 0:
        study.optimize(
            run,
            n_trials=remaining,
            timeout=left(),
            catch=(NonFiniteLossError, SurplusTrialError),
            callbacks=[finished],
            gc_after_trial=True,
        )
        release_lost(storage, study, started)
        if not _running(study):
            continue
        # Other processes hold the study's last trials. Wait for them: a trial of a live
        # process settles; one of a dead process goes stale, fails, and its retry is queued
        # for this loop to run, so that no trial is lost. A look is one query, so look often:
        # the step ends as soon as the last trial does.
        time.sleep(min(WAIT_POLL_SECONDS, left() or WAIT_POLL_SECONDS))
        optuna.storages.fail_stale_trials(study)
    return settled


def study_result(
    storage_url: str,
    name: str,
    settings: SearchSettings,
    checkpoint_dir: Path,
    ran_now: list[int],
) -> SearchResult:
    """What the study holds: its trials and the best of them, whose model was kept."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=open_storage(storage_url, settings))
    trials = [
        _record(trial)
        for trial in study.get_trials(deepcopy=False)
        if SURPLUS_ATTR not in trial.user_attrs
    ]
    completed = [trial for trial in trials if trial.state == "COMPLETE" and trial.value is not None]
    if not completed:
        raise RuntimeError(
            f"study {name}: no trial completed ({len(trials)} tried: "
            + ", ".join(f"#{t.number} {t.state} {t.reason}".strip() for t in trials)
            + "); give the search more trials or minutes"
        )
    best = min(completed, key=lambda trial: trial.value)
    checkpoint = checkpoint_dir / f"trial_{best.number}.keras"
    return SearchResult(
        study_name=name,
        best_number=best.number,
        best_value=best.value,
        best_params=best.params,
        trials=trials,
        ran_now=sorted(ran_now),
        checkpoint=str(checkpoint) if checkpoint.exists() else None,
    )


def run_search(
    data: EncodedText,
    settings: SearchSettings,
    storage_url: str,
    name: str,
    checkpoint_dir: Path,
    observer: TrialObserver | None = None,
    trainer: Callable[..., History] = train,
) -> SearchResult:
    """`search` in this process, then the study's result."""
    ran_now = search(data, settings, storage_url, name, checkpoint_dir, observer, trainer=trainer)
    return study_result(storage_url, name, settings, checkpoint_dir, ran_now)
