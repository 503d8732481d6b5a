"""What every training run's config shares: how long it may train, in how big batches, from
which seed. The search, the final training and both retraining paths extend it."""

from datetime import datetime

import dagster as dg
from pydantic import Field

from thunder_dagster.times import utc_now

# A step whose end time has passed before it starts still gets this long: a search one
# short trial, a final training one epoch cut short, rather than nothing to deploy.
LEAST_SECONDS = 6.0


class BudgetConfig(dg.Config):
    epochs: int = Field(default=3, ge=1, description="Most epochs to train")
    batch_size: int = Field(default=128, ge=1, description="Windows per batch")
    seed: int = Field(default=0, description="Seed of the weights and the batches")


class DeadlineConfig(BudgetConfig):
    """A budget in minutes that may also end at a time of day."""

    minutes: float = Field(default=4.0, gt=0, description="Wall-clock budget of this step")
    finish_by: str | None = Field(
        default=None,
        description="A UTC time (ISO 8601 with its offset) at which this step stops, whatever "
        "minutes says; `thunder train --minutes` sets it so the whole run fits its minutes",
    )

    def seconds(self) -> float:
        """The step's wall-clock budget as it starts: its minutes, cut at `finish_by`."""
        budget = self.minutes * 60
        if self.finish_by is None:
            return budget
        try:
            end = datetime.fromisoformat(self.finish_by)
        except ValueError as error:
            raise dg.Failure(
                f"finish_by: {self.finish_by!r} is not an ISO 8601 time; "
                "give one like 2026-12-02T10:00:00+00:00"
            ) from error
        if end.tzinfo is None:
            raise dg.Failure(
                f"finish_by: {self.finish_by!r} has no UTC offset; add one (+00:00 for UTC)"
            )
        return max(LEAST_SECONDS, min(budget, (end - utc_now()).total_seconds()))
