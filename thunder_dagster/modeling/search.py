"""What a search is asked for and what it found: plain records, no Optuna or TensorFlow."""

import hashlib
import json
from dataclasses import asdict, dataclass

from thunder_dagster.modeling.space import CONTEXT_LENGTHS, FAMILIES
from thunder_dagster.modeling.training import Budget, Epoch


@dataclass(frozen=True)
class SearchSettings:
    trials: int
    budget: Budget
    minutes: float | None = None
    families: tuple[str, ...] = FAMILIES
    context_lengths: tuple[int, ...] = CONTEXT_LENGTHS
    seed: int = 0
    prune: bool = True
    heartbeat_seconds: int = 10
    stale_after_seconds: int = 30

    def space_digest(self) -> str:
        """Changing the space starts a new study; the same space resumes the old one."""
        described = json.dumps(
            {
                "families": sorted(self.families),
                "context_lengths": sorted(self.context_lengths),
                "budget": asdict(self.budget) | {"max_seconds": None},
            },
            sort_keys=True,
        )
        return hashlib.sha256(described.encode()).hexdigest()[:8]


@dataclass(frozen=True)
class TrialRecord:
    number: int
    state: str
    value: float | None
    params: dict
    seconds: float | None
    validation_losses: list[float]
    reason: str = ""


@dataclass(frozen=True)
class SearchResult:
    study_name: str
    best_number: int
    best_value: float
    best_params: dict
    trials: list[TrialRecord]
    ran_now: list[int]
    checkpoint: str | None
    validation_fraction: float = 0.1

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[trial.state] = counts.get(trial.state, 0) + 1
        return counts


class TrialObserver:
    """Hears a trial start, each of its epochs, and its end; the asset logs and tracks them."""

    def trial_started(self, number: int, params: dict) -> None:
        pass

    def epoch_ended(self, number: int, epoch: Epoch) -> None:
        pass

    def trial_finished(self, record: TrialRecord, counted: int) -> None:
        """`counted`: the trials the whole study has settled, this one included."""
