"""The pipeline's commands: ingest, train, task, reward, demo, analyze. Each runs its job in
this process on the workspace's instance, so the UI shows the run."""

import json

import click

from thunder_dagster.cli.reports import print_ingest_summary, print_training_summary
from thunder_dagster.cli.workspace import AgentId, RemoteRun, Workspace, finish
from thunder_dagster.tasks.registry import KINDS, TASKS

DEMO_PROMPT = "The bakery"


@click.command()
@click.argument("agent_id", type=AgentId)
def ingest(agent_id: str) -> None:
    """Ingest AGENT_ID's uploads now: documents, chunks and the training dataset CSV.

    Always starts a new run, also for content whose earlier run failed.
    """
    ws = Workspace.resolve()
    ws.require_folder(agent_id)
    result = ws.launch("ingest_job", agent_id)
    print_ingest_summary(ws.home, agent_id)
    finish(result, "ingest")


@click.command()
@click.argument("agent_id", type=AgentId)
@click.option("--trials", type=click.IntRange(min=1), help="TPE trials to finish")
@click.option(
    "--minutes",
    type=click.FloatRange(min=0.1),
    help="Wall-clock budget of the whole run: ingest, search, training, export and deployment",
)
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    help="A text generator's epochs of each search trial and most of its final training: a "
    "budget in work, which --minutes still caps",
)
def train(agent_id: str, trials: int | None, minutes: float | None, epochs: int | None) -> None:
    """Ingest AGENT_ID's uploads and train, verify and deploy its model now, within --minutes
    (the training job of the agent's task: a generator's or a classifier's)."""
    from thunder_dagster.times import utc_now
    from thunder_dagster.training_plan import plan_for

    started = utc_now()
    ws = Workspace.resolve()
    ws.require_folder(agent_id)
    job, ops = plan_for(ws.task_of(agent_id), trials, minutes, started, epochs=epochs)
    result = ws.launch(job, agent_id, ops=ops)
    print_ingest_summary(ws.home, agent_id)
    if result.success:
        print_training_summary(ws.home, agent_id)
    finish(result, "train")


def _tasks_help() -> str:
    return "; ".join(f"{name}: {kind.summary}" for name, kind in KINDS.items())


@click.command(epilog=f"Tasks: {_tasks_help()}.")
@click.argument("agent_id", type=AgentId)
@click.argument("task_type", required=False, type=click.Choice(TASKS))
def task(agent_id: str, task_type: str | None) -> None:
    """Show AGENT_ID's task, or set it to TASK_TYPE.

    classification and sentiment train a classifier on the agent's labelled uploads (CSV with
    text and label columns, or JSONL objects); the others a text generator."""
    from thunder_dagster.tasks.agents import write_task

    ws = Workspace.resolve()
    if task_type is None:
        click.echo(ws.task_of(agent_id))
        return
    ws.home.create_agent(agent_id)
    path = write_task(ws.home.agent_dir(agent_id), task_type)
    click.echo(f"agent {agent_id}: task {task_type} ({path})")


@click.command()
@click.argument("agent_id", type=AgentId)
@click.option("--trials", type=click.IntRange(min=1), help="TPE trials of the reward head")
def reward(agent_id: str, trials: int | None) -> None:
    """Train AGENT_ID's reward model now on its rated answers (and API B's grades, when
    THUNDER_TEACHER_URL is set); served for best_of once its checks pass."""
    ws = Workspace.resolve()
    ops = {"reward_model": {"config": {"trials": trials}}} if trials else None
    result = ws.launch("reward_job", agent_id, ops=ops)
    if result.success:
        card = ws.home.deployments_dir(agent_id) / "reward.json"
        click.echo(f"reward model of {agent_id}: {card if card.exists() else 'not served'}")
    finish(result, "reward")


@click.command()
@click.option("--agent", "agent_id", default="sample", show_default=True, type=AgentId)
@click.option("--trials", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--minutes", default=6.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    help="Epochs of each search trial and most epochs of the final training: a budget in "
    "work, which --minutes still caps",
)
def demo(agent_id: str, trials: int, minutes: float, epochs: int | None) -> None:
    """The main job on the bundled sample agent: its documents go through the whole graph to a
    deployed model, and the deployed model writes a sample."""
    run_demo(agent_id, trials, minutes, epochs=epochs)


def run_demo(
    agent_id: str,
    trials: int,
    minutes: float,
    parallel: int | None = None,
    epochs: int | None = None,
) -> None:
    from thunder_dagster.samples import copy_sample_agent
    from thunder_dagster.training_plan import training_ops

    ws = Workspace.resolve()
    ws.home.create_agent(agent_id)
    copied = copy_sample_agent(ws.home, agent_id)
    click.echo(f"THUNDER_HOME={ws.home.root}; sample agent {agent_id!r}: {copied} file(s) copied")
    ops = training_ops(trials, minutes, epochs=epochs, parallel=parallel)
    result = ws.launch("pipeline_job", agent_id, ops=ops)
    print_ingest_summary(ws.home, agent_id)
    if result.success:
        print_training_summary(ws.home, agent_id, DEMO_PROMPT)
    finish(result, "demo")


@click.command()
@click.argument("agent_id", type=AgentId)
@click.option(
    "--day",
    type=click.DateTime(["%Y-%m-%d"]),
    help="The day to analyse [default: yesterday, in THUNDER_TIMEZONE]",
)
def analyze(agent_id: str, day) -> None:
    """Run the daily analysis of AGENT_ID for one day and print the decision as JSON: the rule
    that fired (fine_tune, distillation or none), its inputs, the reason, the learning rate."""
    from datetime import datetime, timedelta
    from zoneinfo import ZoneInfo

    import dagster as dg

    from thunder_dagster.runtime.partitions import ANALYSIS_TIMEZONE

    ws = Workspace.resolve()
    if day is None:
        day = datetime.now(ZoneInfo(ANALYSIS_TIMEZONE)) - timedelta(days=1)
    day_key = day.strftime("%Y-%m-%d")
    try:
        result = ws.launch(
            "daily_analysis_job",
            agent_id,
            partition_key=dg.MultiPartitionKey({"agent": agent_id, "day": day_key}),
            tags={"thunder/day": day_key},
        )
    except dg.DagsterUnknownPartitionError as error:
        raise click.BadParameter(
            f"{day_key} is not a day the analysis covers: from 2026-01-01 up to today",
            param_hint="--day",
        ) from error
    if not result.success:
        finish(result, "analyze")
    if isinstance(result, RemoteRun):
        click.echo(f"the decision is training_triggers' materialization: {result.url}")
        return
    decision = result.output_for_node("training_triggers")
    stats = result.output_for_node("query_log_stats")
    decided = {
        "agent_id": agent_id,
        "day": day_key,
        "window_utc": [stats.window_start.isoformat(), stats.window_end.isoformat()],
        "rule": decision.change,
        "inputs": decision.inputs,
        "reason": decision.reason,
        "learning_rate": decision.learning_rate,
    }
    click.echo(json.dumps(decided, indent=2))
