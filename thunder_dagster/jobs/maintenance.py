from datetime import timedelta

import dagster as dg
from pydantic import Field

from thunder_dagster.deployments.cleanup import CleanupReport, clean_agent
from thunder_dagster.home import AGENT_ID_PATTERN
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore
from thunder_dagster.runtime.policies import CLEANUP_RETRY


class CleanupConfig(dg.Config):
    keep_versions: int = Field(
        default=5, ge=1, description="Newest versions kept per agent, besides those serving"
    )
    max_age_hours: float = Field(
        default=24.0, gt=0, description="Build, trial and staging folders older than this go"
    )


def purge_old_answers(home, store, warn) -> dict[str, int]:
    """Each agent's answers older than its retention (feedback/retention.py), per agent; an
    agent whose agent.json cannot be read keeps its answers, with a warning."""
    from thunder_dagster.feedback.retention import logged_agents, purge
    from thunder_dagster.tasks.agents import AgentSettingsError, read_retention
    from thunder_dagster.times import utc_now

    purged = {}
    for agent_id in logged_agents(store.engine):
        try:
            days = read_retention(home.agent_dir(agent_id))
        except AgentSettingsError as error:
            warn(f"{agent_id}: answers kept, retention unreadable: {error}")
            continue
        gone = purge(store.engine, agent_id, utc_now() - timedelta(days=days))
        if gone:
            purged[agent_id] = gone
    return purged


@dg.op(retry_policy=CLEANUP_RETRY)
def clean_up(
    context: dg.OpExecutionContext,
    config: CleanupConfig,
    thunder: ThunderHome,
    queries: QueryLogStore,
) -> dict:
    """Prune model versions beyond the retention (never one that serves or that a rollback
    needs), expired response-cache entries, stale temporary folders and each agent's answers
    older than its `retention_days`; report what went.

    One agent's unreadable state is reported and left (a retry would meet it again); a failure
    of the whole step, such as the query-log store out of reach, is retried once 30 minutes on."""
    home = thunder.home()
    report = CleanupReport()
    models_root = home.root / "models"
    entries = sorted(models_root.iterdir()) if models_root.is_dir() else []
    failed: list[str] = []
    for entry in entries:
        if not (entry.is_dir() and AGENT_ID_PATTERN.fullmatch(entry.name)):
            # A README, lost+found, a stray file: not an agent's models, so not cleanup's.
            context.log.info(f"models/{entry.name}: not an agent's folder; left alone")
            continue
        try:
            clean_agent(
                home.models_dir(entry.name),
                home.deployments_dir(entry.name),
                config.keep_versions,
                config.max_age_hours * 3600,
                report,
            )
        except Exception as error:
            # One agent's trouble leaves the others' cleanup to run.
            context.log.warning(f"models/{entry.name}: not cleaned: {error}")
            failed.append(f"{entry.name}: {type(error).__name__}: {error}")
    with queries.open() as store:
        expired = store.purge_expired_cache()
        purged = purge_old_answers(home, store, context.log.warning)
    summary = {
        "removed_versions": report.removed_versions,
        "removed_paths": len(report.removed_paths),
        "freed_bytes": report.freed_bytes,
        "expired_cache_entries": expired,
        "purged_answers": purged,
        "failed_agents": failed,
    }
    context.log.info(f"cleanup: {summary}")
    context.add_output_metadata(
        {
            "freed_mb": dg.MetadataValue.float(round(report.freed_bytes / 2**20, 3)),
            "removed_versions": ", ".join(report.removed_versions) or "none",
            "removed_paths": len(report.removed_paths),
            "expired_cache_entries": expired,
            "purged_answers": dg.MetadataValue.json(purged),
            "failed_agents": "\n".join(failed) or "none",
        }
    )
    return summary


@dg.job(description="The hourly cleanup of old model versions, cache entries and temp files.")
def cleanup_job():
    clean_up()


cleanup_schedule = dg.ScheduleDefinition(
    name="cleanup_schedule",
    job=cleanup_job,
    cron_schedule="0 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour: old model versions, expired cached answers and stale temporary "
    "folders go.",
)
