"""The `thunder` command: runs materializations through Dagster on the configured instance."""

import json
import os
import shutil
import sys
from pathlib import Path

import click

from thunder_dagster.home import CATEGORIES, Home, InvalidAgentIdError, validate_agent_id

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_AGENT_DIR = REPO_ROOT / "samples" / "agent"


def _home() -> Home:
    """THUNDER_HOME, with DAGSTER_HOME beneath it holding the repo's dagster.yaml."""
    home = Home.resolve()
    os.environ["THUNDER_HOME"] = str(home.root)
    dagster_home = Path(os.environ.setdefault("DAGSTER_HOME", str(home.dagster_home)))
    dagster_home.mkdir(parents=True, exist_ok=True)
    instance_config = dagster_home / "dagster.yaml"
    if not instance_config.exists() and (REPO_ROOT / "dagster.yaml").exists():
        shutil.copyfile(REPO_ROOT / "dagster.yaml", instance_config)
    return home


def _agent(agent_id: str) -> str:
    try:
        return validate_agent_id(agent_id)
    except InvalidAgentIdError as error:
        raise click.BadParameter(str(error), param_hint="AGENT_ID") from error


def run_job(job_name: str, agent_id: str, instance=None, tags: dict[str, str] | None = None):
    """Execute a partitioned job for one agent on the configured instance, so the UI shows it.

    No run key: this always starts a new run, also for content whose earlier run failed.
    """
    import dagster as dg

    from thunder_dagster.assets.partitions import agents
    from thunder_dagster.definitions import defs

    instance = instance or dg.DagsterInstance.get()
    if not instance.has_dynamic_partition(agents.name, agent_id):
        instance.add_dynamic_partitions(agents.name, [agent_id])
    job = defs.resolve_job_def(job_name)
    return job.execute_in_process(
        instance=instance,
        partition_key=agent_id,
        raise_on_error=False,
        run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
        tags={"thunder/launched_by": "cli", **(tags or {})},
    )


def print_ingest_summary(home: Home, agent_id: str) -> None:
    report_path = home.ingest_report_path(agent_id)
    if not report_path.exists():
        return
    report = json.loads(report_path.read_text())
    summary = ", ".join(f"{count} {status}" for status, count in report["summary"].items())
    click.echo(f"agent {agent_id}: {len(report['files'])} files: {summary}")
    for entry in report["files"]:
        detail = (
            f"{entry['chars']} chars, {entry['chunks']} chunks"
            if entry["status"] == "ok"
            else entry["reason"]
        )
        click.echo(f"  {entry['status']:8} {entry['path']}  ({detail})")
    click.echo(f"report: {report_path}")
    manifest = home.processed_dir(agent_id) / "dataset.json"
    if manifest.exists():
        dataset = json.loads(manifest.read_text())
        click.echo(f"dataset {dataset['version']}: {dataset['rows']} chunks in {dataset['path']}")


def _finish(result, what: str) -> None:
    if result.success:
        click.echo(f"{what}: run {result.run_id} succeeded")
        return
    click.echo(f"{what}: run {result.run_id} FAILED", err=True)
    for event in result.all_events:
        if event.is_failure and event.step_key:
            click.echo(f"  {event.step_key}: {event.message}", err=True)
    sys.exit(1)


@click.group()
def main() -> None:
    """thunder-dagster: documents in, a trained and deployed model out."""


@main.command()
@click.argument("agent_id")
def ingest(agent_id: str) -> None:
    """Ingest AGENT_ID's uploads now: documents, chunks and the training dataset CSV.

    Always starts a new run, also for content whose earlier run failed.
    """
    agent_id = _agent(agent_id)
    home = _home()
    if not home.agent_dir(agent_id).is_dir():
        raise click.ClickException(
            f"no folder {home.agent_dir(agent_id)}: put the agent's files under "
            f"{', '.join(CATEGORIES)} there first"
        )
    result = run_job("ingest_job", agent_id)
    print_ingest_summary(home, agent_id)
    _finish(result, "ingest")


def copy_sample_agent(home: Home, agent_id: str) -> int:
    """Copy the bundled sample documents into the agent's folders, leaving unchanged files be."""
    copied = 0
    for source in sorted(SAMPLE_AGENT_DIR.rglob("*")):
        if not source.is_file():
            continue
        target = home.agent_dir(agent_id) / source.relative_to(SAMPLE_AGENT_DIR)
        if target.exists() and target.read_bytes() == source.read_bytes():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        copied += 1
    return copied


@main.command()
@click.option("--agent", "agent_id", default="sample", show_default=True)
def demo(agent_id: str) -> None:
    """The main job on the bundled sample agent: its documents go through the whole graph."""
    agent_id = _agent(agent_id)
    home = _home()
    home.create_agent(agent_id)
    copied = copy_sample_agent(home, agent_id)
    click.echo(f"THUNDER_HOME={home.root}; sample agent {agent_id!r}: {copied} file(s) copied")
    result = run_job("ingest_job", agent_id)
    print_ingest_summary(home, agent_id)
    _finish(result, "ingest")
