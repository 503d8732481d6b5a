"""Progress a person can watch: a line per trial and per epoch, with the best loss so far and
the time left, and the same numbers in MLflow. Only a log function and a tracker are needed."""

import time
from collections.abc import Callable

from thunder_dagster.modeling.search import SearchSettings, TrialObserver, TrialRecord
from thunder_dagster.modeling.training import Epoch
from thunder_dagster.tracking.experiments import Tracker


def epoch_reporter(
    info: Callable[[str], None],
    tracker: Tracker,
    run: str | None,
    epochs: int,
    minutes: float | None = None,
) -> Callable[[Epoch], None]:
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
        info(
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


class RunLogObserver(TrialObserver):
    """A line per epoch and per trial in the run log, and a child MLflow run per trial.

    The counts are the whole study's, so parallel search steps each report the shared progress.
    """

    def __init__(
        self,
        info: Callable[[str], None],
        tracker: Tracker,
        parent: str | None,
        settings: SearchSettings,
    ):
        self.info = info
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
        self.info(f"trial {number} ({self._of()}) starts: {params}")
        run = self.tracker.start_run(f"trial {number}", {"trial": str(number)}, self.parent)
        self.tracker.log_params(run, params)
        self.runs[number] = run

    def epoch_ended(self, number: int, epoch: Epoch) -> None:
        self.info(
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
        self.info(
            f"trial {record.number} {record.state}{reason}: {value}; "
            f"{counted}/{self.settings.trials} trials done; {self._progress()}"
        )
        run = self.runs.get(record.number)
        if record.value is not None:
            self.tracker.log_metrics(run, {"final_validation_loss": record.value})
        self.tracker.end_run(run, "FINISHED" if record.state != "FAIL" else "FAILED")
