"""What every training run's config shares: how long it may train, in how big batches, from
which seed. The search, the final training and both retraining paths extend it."""

import dagster as dg
from pydantic import Field


class BudgetConfig(dg.Config):
    epochs: int = Field(default=3, ge=1, description="Most epochs to train")
    batch_size: int = Field(default=128, ge=1, description="Windows per batch")
    seed: int = Field(default=0, description="Seed of the weights and the batches")
