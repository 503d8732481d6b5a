"""The lines a user watches during training and search, and the metrics MLflow gets."""

from thunder_dagster.modeling.search import SearchSettings, TrialRecord
from thunder_dagster.modeling.training import Budget, Epoch
from thunder_dagster.tracking.experiments import Tracker
from thunder_dagster.tracking.progress import RunLogObserver, epoch_reporter


def sqlite_tracker(tmp_path) -> Tracker:
    return Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "x", (tmp_path / "a").as_uri(), print)


def metric_history(tracker: Tracker, run: str, name: str) -> list[float]:
    return [m.value for m in tracker._connect().get_metric_history(run, name)]


def test_each_epoch_gets_a_line_with_the_best_so_far_and_its_metrics(tmp_path):
    tracker, lines = sqlite_tracker(tmp_path), []
    run = tracker.start_run("keras_model", {})
    ended = epoch_reporter(lines.append, tracker, run, epochs=3, minutes=10)
    for number, loss in enumerate((2.0, 1.5, 1.7)):
        ended(Epoch(number, train_loss=loss + 0.1, validation_loss=loss, seconds=1.0, steps=10))
    assert lines[0].startswith("epoch 1/3: validation loss 2.0000 nats/char")
    assert "best so far 1.5000" in lines[2] and "min left" in lines[2]
    assert metric_history(tracker, run, "validation_loss") == [2.0, 1.5, 1.7]


def test_the_search_reports_the_whole_studys_count_and_a_child_run_per_trial(tmp_path):
    tracker, lines = sqlite_tracker(tmp_path), []
    parent = tracker.start_run("tpe_trials", {})
    settings = SearchSettings(trials=2, budget=Budget(epochs=1), minutes=5)
    observer = RunLogObserver(lines.append, tracker, parent, settings)
    observer.trial_started(0, {"family": "gru"})
    observer.epoch_ended(0, Epoch(0, 2.2, 2.1, 1.0, 10))
    observer.trial_finished(TrialRecord(0, "COMPLETE", 2.1, {}, 1.0, [2.1]), counted=1)
    observer.trial_started(1, {"family": "conv"})
    observer.trial_finished(TrialRecord(1, "FAIL", None, {}, None, [], "diverged"), counted=2)
    assert lines[0] == "trial 0 (1/2) starts: {'family': 'gru'}"
    assert "1/2 trials done; best so far 2.1000" in lines[2]
    assert lines[3].startswith("trial 1 (2/2) starts")
    assert lines[4].startswith("trial 1 FAIL (diverged): -; 2/2 trials done")
    child = tracker._connect().get_run(observer.runs[0])
    assert child.data.tags["mlflow.parentRunId"] == parent
    assert child.info.status == "FINISHED"
    assert tracker._connect().get_run(observer.runs[1]).info.status == "FAILED"
