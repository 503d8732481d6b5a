"""Launching a job from the command line: on the configured instance, so the UI shows the run,
with a progress bar on a terminal, and a report of what failed and why."""

import contextlib
import sys

import dagster as dg

from thunder_dagster.runtime.partitions import agents
from thunder_dagster.runtime.progress import RunProgress, progress_tag


def run_job(
    job: dg.JobDefinition,
    agent_id: str,
    instance=None,
    tags: dict[str, str] | None = None,
    ops: dict | None = None,
    partition_key=None,
):
    """Execute a partitioned job for one agent on the configured instance, so the UI shows it.

    No run key: this always starts a new run, also for content whose earlier run failed. On a
    terminal a progress bar over the run's steps replaces Dagster's INFO lines (the run's log
    keeps them all); piped output keeps the lines. `job` comes from the one Definitions
    (`definitions.defs.resolve_job_def(name)`), which other processes rebuild by its name.
    """
    instance = instance or dg.DagsterInstance.get()
    if not instance.has_dynamic_partition(agents.name, agent_id):
        instance.add_dynamic_partitions(agents.name, [agent_id])
    bar = sys.stderr.isatty()
    run_config = {
        "loggers": {"console": {"config": {"log_level": "WARNING" if bar else "INFO"}}},
        **({"ops": ops} if ops else {}),
    }
    tag = progress_tag()
    tags = {"thunder/launched_by": "cli", tag[0]: tag[1], **(tags or {})}
    progress = RunProgress(instance, tag, sys.stderr) if bar else contextlib.nullcontext()
    with progress:
        if job.executor_def.name == "in_process":
            return job.execute_in_process(
                instance=instance,
                partition_key=partition_key or agent_id,
                raise_on_error=False,
                run_config=run_config,
                tags=tags,
            )
        # Any other executor (Celery workers in the production profile) rebuilds the job in
        # other processes: hand it over as a reconstructable job, which execute_in_process
        # cannot.
        key = partition_key or agent_id
        tags = {**tags, "dagster/partition": str(key)}
        if isinstance(key, dg.MultiPartitionKey):
            tags.update({f"dagster/partition/{d}": k for d, k in key.keys_by_dimension.items()})
        return dg.execute_job(
            dg.build_reconstructable_job(
                "thunder_dagster.definitions", "resolve_job", reconstructable_args=(job.name,)
            ),
            instance=instance,
            run_config=run_config,
            tags=tags,
        )


def failure_report(result) -> list[str]:
    """Lines that say which steps failed, each with its error and what caused it."""
    lines = []
    for event in result.all_events:
        if event.is_failure and event.step_key:
            lines.append(f"  {event.step_key}: {event.message}")
            error = getattr(event.event_specific_data, "error", None)
            while error is not None:  # the error itself, then what caused it
                lines.append(f"    {error.message.strip().splitlines()[0]}")
                error = error.cause
    return lines
