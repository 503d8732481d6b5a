import multiprocessing
import time
from pathlib import Path

import optuna
import pytest

from tests.services import SERVICES, postgres_database
from thunder_dagster.modeling import tuning
from thunder_dagster.modeling.search import SearchSettings
from thunder_dagster.modeling.space import KNOWN_GOOD
from thunder_dagster.modeling.studies import release_lost
from thunder_dagster.modeling.text import encode_documents
from thunder_dagster.modeling.training import Budget, NonFiniteLossError, train

TEXT = "The baker bakes bread at dawn; the oven is hot and the dough is risen. " * 60

pytestmark = SERVICES


def settings(trials, **overrides):
    return SearchSettings(
        **{
            "trials": trials,
            "budget": Budget(epochs=1, steps_per_epoch=2, batch_size=8, validation_windows=4),
            "families": ("gru", "conv"),
            "context_lengths": (16,),
            "heartbeat_seconds": 1,
            "stale_after_seconds": 2,
            "prune": False,
            **overrides,
        }
    )


@pytest.fixture
def data():
    return encode_documents([TEXT])


def test_the_optuna_space_is_read_off_the_keras_tuner_hypermodel(data):
    space = tuning.search_space(settings(1), data.vocab_size)
    assert set(space) == {
        "family",
        "context_length",
        "learning_rate",
        "hidden_size",
        "layers",
        "dropout",
        "activation",
    }
    assert space["learning_rate"].log and space["learning_rate"].low == 1e-5
    assert (space["hidden_size"].low, space["hidden_size"].high, space["hidden_size"].step) == (
        32,
        256,
        32,
    )
    assert space["family"].choices == ("gru", "conv")


def test_a_study_finishes_its_trials_and_keeps_the_best_model(tmp_path, data):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = tuning.run_search(data, settings(2), url, "s", tmp_path / "trials")
    assert result.counts == {"COMPLETE": 2}
    assert result.ran_now == [0, 1]
    assert result.best_value == min(t.value for t in result.trials)
    assert result.checkpoint.endswith(f"trial_{result.best_number}.keras")
    assert all(t.validation_losses for t in result.trials)


def test_a_known_good_configuration_runs_first_when_it_fits_the_space(tmp_path, data):
    fitting = SearchSettings(
        trials=1,
        budget=Budget(epochs=1, steps_per_epoch=1, batch_size=4, validation_windows=2),
        families=("gru",),
        context_lengths=(64,),
    )
    result = tuning.run_search(data, fitting, f"sqlite:///{tmp_path / 'o.db'}", "k", tmp_path)
    assert result.trials[0].params == KNOWN_GOOD[0]


def test_a_trial_whose_end_the_storage_lost_is_failed_and_run_again(tmp_path, data):
    # A database restarted as a trial ends: the process ran it, but the storage still holds
    # it as running, and its heartbeat died with the connection, so it would never go stale.
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    storage = tuning.open_storage(url, settings(1))
    study = tuning.open_study(storage, "lost", settings(1), data.vocab_size)
    lost = study.ask()
    for name, distribution in tuning.search_space(settings(1), data.vocab_size).items():
        tuning.suggest(lost, name, distribution)
    release_lost(storage, study, [lost._trial_id])
    result = tuning.run_search(data, settings(1), url, "lost", tmp_path / "trials")
    by_number = {trial.number: trial for trial in result.trials}
    assert (by_number[lost.number].state, by_number[lost.number].reason) == (
        "FAIL",
        "its end was not recorded; run again",
    )
    assert result.counts == {"FAIL": 1, "COMPLETE": 1}
    [again] = [trial for trial in result.trials if trial.state == "COMPLETE"]
    assert again.params == lost.params


def test_a_trial_a_failed_attempt_left_running_is_failed_and_run_again_by_the_next(
    tmp_path, data, monkeypatch
):
    # The database goes away under a trial: its heartbeat is never recorded and its end is
    # refused, so the search step fails with the trial held as running. The step's retry, in
    # the same process, runs it again (without, it waited for a trial that never goes stale).
    from sqlalchemy.exc import OperationalError

    def gone(*_args, **_kwargs):
        raise OperationalError("UPDATE trials", {}, Exception("the server closed the connection"))

    storage_class = optuna.storages.RDBStorage
    original = storage_class.set_trial_state_values

    def refused(self, trial_id, state, values=None):
        if state != optuna.trial.TrialState.RUNNING:
            gone()
        return original(self, trial_id, state, values)

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    monkeypatch.setattr(storage_class, "set_trial_state_values", refused)
    monkeypatch.setattr(storage_class, "record_heartbeat", gone)
    # Optuna meets the refused end as a trial still running, and stops on an assertion.
    with pytest.raises((OperationalError, AssertionError)):
        tuning.search(data, settings(1), url, "retried", tmp_path / "trials")
    monkeypatch.undo()
    result = tuning.run_search(data, settings(1, minutes=1), url, "retried", tmp_path / "trials")
    assert result.counts == {"FAIL": 1, "COMPLETE": 1}
    lost, again = result.trials
    assert lost.reason == "its end was not recorded; run again" and again.params == lost.params


def test_a_resumed_study_never_redoes_finished_trials_and_retries_a_dead_workers_trial(
    tmp_path, data
):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    first = tuning.run_search(data, settings(2), url, "s", tmp_path / "trials")
    # A worker that died in the middle of a trial: RUNNING, its heartbeat stopped.
    storage = tuning.open_storage(url, settings(3))
    study = optuna.load_study(study_name="s", storage=storage)
    orphan = study.ask()
    for name, distribution in tuning.search_space(settings(3), data.vocab_size).items():
        tuning.suggest(orphan, name, distribution)
    storage.record_heartbeat(orphan._trial_id)
    time.sleep(4)  # SQLite keeps heartbeats to the second
    resumed = tuning.run_search(data, settings(3), url, "s", tmp_path / "trials")
    states = {t.number: t.state for t in resumed.trials}
    assert [states[t.number] for t in first.trials] == ["COMPLETE", "COMPLETE"]
    assert states[orphan.number] == "FAIL"
    assert not set(resumed.ran_now) & {t.number for t in first.trials}
    assert resumed.counts == {"COMPLETE": 3, "FAIL": 1}
    retried = [t for t in resumed.trials if t.number > orphan.number]
    assert retried[0].params == orphan.params


def test_a_diverged_trial_is_failed_not_completed_and_the_search_goes_on(tmp_path, data):
    calls = []

    def diverging_first(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise NonFiniteLossError("epoch 0: train loss nan, validation loss nan")
        return train(*args, **kwargs)

    result = tuning.run_search(
        data,
        settings(2),
        f"sqlite:///{tmp_path / 'o.db'}",
        "n",
        tmp_path / "trials",
        trainer=diverging_first,
    )
    assert result.counts == {"FAIL": 1, "COMPLETE": 1}
    failed = next(t for t in result.trials if t.state == "FAIL")
    assert failed.value is None and failed.reason.startswith("diverged")


def _worker(url: str, folder: str, trials: int) -> None:
    search_data = encode_documents([TEXT])
    # The first known-good configuration (a GRU over 64 characters) fits this space: queued.
    space = settings(trials, context_lengths=(64,))
    tuning.run_search(search_data, space, url, "parallel", Path(folder) / "trials")


@pytest.mark.integration
def test_two_workers_on_postgresql_finish_exactly_the_studys_trials(tmp_path):
    trials = 6
    context = multiprocessing.get_context("spawn")
    with postgres_database() as url:
        workers = [
            context.Process(target=_worker, args=(url, str(tmp_path), trials)) for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(timeout=600)
        assert [worker.exitcode for worker in workers] == [0, 0]
        study = optuna.load_study(study_name="parallel", storage=url)
        counted = [t for t in study.get_trials() if tuning.SURPLUS_ATTR not in t.user_attrs]
        assert tuning.counted_trials(study) == trials
        assert [t.state for t in counted] == [optuna.trial.TrialState.COMPLETE] * trials
        # The known-good configuration was queued once, and no two trials share their point.
        points = [tuple(sorted(t.params.items())) for t in counted]
        assert len(set(points)) == trials
        assert sum(t.params == KNOWN_GOOD[0] for t in counted) == 1
        optuna.delete_study(study_name="parallel", storage=url)
