from datetime import date, datetime, timedelta

import dagster as dg

from thunder_dagster.adapters.releases import ab_folder
from thunder_dagster.deployments.pointers import read_pointer
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore
from thunder_dagster.runtime.partitions import ANALYSIS_START, ANALYSIS_TIMEZONE, agents

daily_analysis_job = dg.define_asset_job(
    name="daily_analysis_job",
    selection=dg.AssetSelection.assets("query_log_stats", "training_triggers", "query_drift"),
    description="The statistics of an agent's query logs for one day, the decision of the "
    "fine-tune and distillation rules, and the day's drift score.",
)


# After downtime Dagster runs only a schedule's latest missed tick; that tick asks for every
# day missed since an agent's last analysed one, up to this many, each its own partition.
CATCH_UP_DAYS = 7


def analysed_day(scheduled: datetime) -> str:
    """The day a 02:00 tick analyses: the one that ended two hours before, in the zone."""
    return (scheduled - timedelta(days=1)).strftime("%Y-%m-%d")


def days_to_analyse(yesterday: str, analysed: set[str]) -> list[str]:
    """Yesterday, and the days before it back to the agent's latest analysed day (at most
    CATCH_UP_DAYS in all, none before the partitions start); an agent never analysed gets
    yesterday alone."""
    last = date.fromisoformat(yesterday)
    days = [last.isoformat()]
    if analysed:
        for back in range(1, CATCH_UP_DAYS):
            day = (last - timedelta(days=back)).isoformat()
            if day in analysed or day < ANALYSIS_START:
                break
            days.append(day)
    return sorted(days)


@dg.schedule(
    job=daily_analysis_job,
    cron_schedule="0 2 * * *",
    execution_timezone=ANALYSIS_TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="At 02:00 (THUNDER_TIMEZONE) every agent's yesterday is analysed, each day "
    "exactly its 24 hours. After downtime Dagster runs only the latest missed tick, which asks "
    "for the missed days too, each its own partition; the run key makes a second tick for the "
    "same day a no-op.",
)
def daily_analysis_schedule(context: dg.ScheduleEvaluationContext):
    yesterday = analysed_day(context.scheduled_execution_time)
    done = context.instance.get_materialized_partitions(dg.AssetKey("training_triggers"))
    requests = []
    for agent_id in sorted(context.instance.get_dynamic_partitions(agents.name)):
        analysed = {key.split("|", 1)[1] for key in done if key.split("|", 1)[0] == agent_id}
        requests += [
            dg.RunRequest(
                run_key=f"analysis:{agent_id}:{day}",
                partition_key=dg.MultiPartitionKey({"agent": agent_id, "day": day}),
                tags={"thunder/agent": agent_id, "thunder/day": day},
            )
            for day in days_to_analyse(yesterday, analysed)
        ]
    if not requests:
        return dg.SkipReason("no agents yet")
    return requests


fine_tune_job = dg.define_asset_job(
    name="fine_tune_job",
    selection=dg.AssetSelection.assets("fine_tuned_model"),
    description="The champion fine-tuned on its well-rated answers, released as the challenger.",
)

distillation_job = dg.define_asset_job(
    name="distillation_job",
    selection=dg.AssetSelection.assets("distilled_model"),
    description="A smaller student trained on the teacher's answers, released as the challenger.",
)

adaptation_job = dg.define_asset_job(
    name="adaptation_job",
    selection=dg.AssetSelection.assets("agent_adapter"),
    description="A chat or instruction agent's adapter on the instruct base, searched, trained "
    "and gated on its documents, rated answers and teacher; the first released as champion, "
    "a later one as the challenger of an A/B test.",
)

adaptation_pipeline_job = dg.define_asset_job(
    name="adaptation_pipeline_job",
    selection=dg.AssetSelection.groups("ingest", "retrieval")
    | dg.AssetSelection.assets("agent_adapter"),
    description="A chat or instruction agent from its uploads to its index and its adapter: "
    "what `thunder train` runs for one.",
)

relabel_job = dg.define_asset_job(
    name="relabel_job",
    selection=dg.AssetSelection.assets("labelled_examples"),
    description="A classifier agent's labelled examples taken again, its users' corrected "
    "labels included; classifier_sensor then trains the new version through the champion "
    "gate.",
)

ab_test_job = dg.define_asset_job(
    name="ab_test_job",
    selection=dg.AssetSelection.assets("ab_test_result", "champion_promotion"),
    description="The A/B result of champion against challenger; promotion when significantly "
    "better, retirement when not.",
)


@dg.schedule(
    job=ab_test_job,
    cron_schedule="30 * * * *",
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour, the A/B result of each agent that has a challenger, or a running "
    "best-of-n test of its champion.",
)
def ab_test_schedule(
    context: dg.ScheduleEvaluationContext, thunder: ThunderHome, queries: QueryLogStore
):
    from thunder_dagster.feedback.experiments import AbTestStore, best_of_in

    home = thunder.home()
    hour = context.scheduled_execution_time.strftime("%Y-%m-%dT%H")
    with queries.open() as store:
        tested = {
            agent_id
            for agent_id, test in AbTestStore(store.engine).latest_per_agent().items()
            if test.running and best_of_in(test.challenger_version) is not None
        }
    requests = [
        dg.RunRequest(run_key=f"ab:{agent_id}:{hour}", partition_key=agent_id)
        for agent_id in sorted(context.instance.get_dynamic_partitions(agents.name))
        if agent_id in tested
        or read_pointer(ab_folder(home.deployments_dir(agent_id)), "challenger") is not None
    ]
    return requests or dg.SkipReason("no agent has a challenger or a best-of-n test")


reward_job = dg.define_asset_job(
    name="reward_job",
    selection=dg.AssetSelection.assets("reward_model"),
    description="An agent's reward model trained again on its rated answers and the teacher's "
    "grades, served for best-of-n once its checks pass.",
)


@dg.schedule(
    job=reward_job,
    cron_schedule="0 3 * * *",
    execution_timezone=ANALYSIS_TIMEZONE,
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="At 03:00 (THUNDER_TIMEZONE), after the daily analysis, the reward model of "
    "every generating agent is trained again on the ratings and grades so far.",
)
def reward_schedule(context: dg.ScheduleEvaluationContext, thunder: ThunderHome):
    from thunder_dagster.tasks.agents import AgentSettingsError, read_task
    from thunder_dagster.tasks.registry import task_kind

    home = thunder.home()
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    requests, skipped = [], []
    for agent_id in sorted(context.instance.get_dynamic_partitions(agents.name)):
        if read_pointer(home.deployments_dir(agent_id)) is None:
            continue
        try:
            if task_kind(read_task(home.agent_dir(agent_id))).labelled:
                continue  # a classifier's answers are labels, not text to rank
        except AgentSettingsError as error:
            skipped.append(str(error))
            continue
        requests.append(dg.RunRequest(run_key=f"reward:{agent_id}:{day}", partition_key=agent_id))
    return requests or dg.SkipReason("; ".join(skipped) or "no generating agent is deployed")
