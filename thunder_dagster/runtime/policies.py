"""Retry policies, pools and run tags that several assets and jobs state at their decorators."""

import dagster as dg

# Reading uploads and writing the dataset can meet a file being replaced or a full disk for a
# moment: a second and a third try, a second and then two apart.
IO_RETRY = dg.RetryPolicy(max_retries=2, delay=1.0, backoff=dg.Backoff.EXPONENTIAL)

# The training an upload starts (search, final training, classifier, reward model): three
# attempts, as seed 000's job queue gives every job ("Max Attempts: 3"); a retried step resumes
# its study or training.
TRAINING_RETRY = dg.RetryPolicy(max_retries=2, delay=5)

# Fine-tune and distillation get one attempt: seed 004's TrainJob has `max_attempts: 1`
# ("Don't retry training jobs"). A failed one is left to the next day's rules, which decide
# again on that day's feedback; no step retry, no run retry.
RETRAINING_ATTEMPTS = 1

# Cleanup is retried once, 30 minutes later: seed 004 retries its cleanup worker after
# `:timer.minutes(30)`; once, so that a failing cleanup does not pile up behind the next hour's.
CLEANUP_RETRY = dg.RetryPolicy(max_retries=1, delay=30 * 60)

# Steps that train share this pool: its slots are how many train at once on the instance.
TRAINING_POOL = "training"

# A run whose process died (killed worker, lost host) is launched again once by the daemon;
# steps that raise are retried by their own RetryPolicy.
RUN_RETRY_TAGS = {"dagster/max_retries": "1", "dagster/retry_on_asset_or_op_failure": "false"}
