"""Retry policies, pools and run tags that several assets and jobs state at their decorators."""

import dagster as dg

# Reading uploads and writing the dataset can meet a file being replaced or a full disk for a
# moment: a second and a third try, a second and then two apart.
IO_RETRY = dg.RetryPolicy(max_retries=2, delay=1.0, backoff=dg.Backoff.EXPONENTIAL)

# Three attempts, as the seed's job queue made; a retried step resumes its study or training.
TRAINING_RETRY = dg.RetryPolicy(max_retries=2, delay=5)

# Steps that train share this pool: its slots are how many train at once on the instance.
TRAINING_POOL = "training"

# A run whose process died (killed worker, lost host) is launched again once by the daemon;
# steps that raise are retried by their own RetryPolicy.
RUN_RETRY_TAGS = {"dagster/max_retries": "1", "dagster/retry_on_asset_or_op_failure": "false"}
