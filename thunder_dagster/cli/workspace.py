"""What every command shares: the workspace (THUNDER_HOME and the Dagster instance under it,
resolved once, without touching the process environment), the AGENT_ID parameter type, runs
launched in process with their outcome reported, and JSON output for list-like commands."""

import dataclasses
import json
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import click

from thunder_dagster import settings
from thunder_dagster.home import CATEGORIES, Home, InvalidAgentIdError, validate_agent_id

REPO_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Workspace:
    home: Home
    dagster_home: Path

    @classmethod
    def resolve(cls) -> "Workspace":
        """THUNDER_HOME, and DAGSTER_HOME (default: beneath it) holding the repo's
        dagster.yaml when it has none."""
        home = Home.resolve()
        dagster_home = Path(settings.DAGSTER_HOME.value() or home.dagster_home)
        dagster_home.mkdir(parents=True, exist_ok=True)
        instance_config = dagster_home / "dagster.yaml"
        if not instance_config.exists() and (REPO_ROOT / "dagster.yaml").exists():
            shutil.copyfile(REPO_ROOT / "dagster.yaml", instance_config)
        return cls(home, dagster_home)

    @property
    def query_db_url(self) -> str:
        return settings.QUERY_DB_URL.value() or self.home.queries_db_url

    @property
    def has_query_store(self) -> bool:
        """Whether a query-log store exists to read (a SQLite one is made by its first use)."""
        return settings.QUERY_DB_URL.is_set() or self.home.queries_db.exists()

    @contextmanager
    def instance(self) -> Iterator:
        """The Dagster instance of this workspace (the one the UI shows)."""
        import dagster as dg

        with dg.DagsterInstance.from_config(str(self.dagster_home)) as instance:
            yield instance

    def require_folder(self, agent_id: str) -> None:
        if not self.home.agent_dir(agent_id).is_dir():
            raise click.ClickException(
                f"no folder {self.home.agent_dir(agent_id)}: put the agent's files under "
                f"{', '.join(CATEGORIES)} there first"
            )

    def task_of(self, agent_id: str) -> str:
        from thunder_dagster.tasks.agents import AgentSettingsError, read_task

        try:
            return read_task(self.home.agent_dir(agent_id))
        except AgentSettingsError as error:
            raise click.ClickException(str(error)) from error

    def launch(self, job_name: str, agent_id: str, **options):
        """A run of the job for the agent in this process, on this workspace's instance."""
        from thunder_dagster.definitions import defs
        from thunder_dagster.runtime.launch import run_job

        with self.instance() as instance:
            return run_job(defs.resolve_job_def(job_name), agent_id, instance, **options)

    def run_op_job(self, job_name: str, op_name: str, config: dict, agent_id: str):
        """One run of a one-op job in this process, on the instance (the UI shows it), tagged
        with its agent so the UI filters by it."""
        from thunder_dagster.definitions import defs

        with self.instance() as instance:
            return defs.resolve_job_def(job_name).execute_in_process(
                run_config={"ops": {op_name: {"config": config}}},
                instance=instance,
                tags={"thunder/launched_by": "cli", "thunder/agent": agent_id},
                raise_on_error=False,
            )


class AgentIdType(click.ParamType):
    """An agent id as the home accepts it, or the error that says which are."""

    name = "AGENT_ID"

    def convert(self, value, param, ctx) -> str:
        try:
            return validate_agent_id(value)
        except InvalidAgentIdError as error:
            self.fail(str(error), param, ctx)


AgentId = AgentIdType()
as_json = click.option("--json", "as_json", is_flag=True, help="Print JSON, one object a row.")


def echo_json(records) -> None:
    """Typed records (dataclasses) as a JSON list, times as ISO 8601."""
    rows = [dataclasses.asdict(record) for record in records]
    click.echo(json.dumps(rows, indent=2, default=str))


def finish(result, what: str) -> None:
    """Say how the run ended; exit 1 with what failed and why when it failed."""
    if result.success:
        click.echo(f"{what}: run {result.run_id} succeeded")
        return
    from thunder_dagster.runtime.launch import failure_report

    click.echo(f"{what}: run {result.run_id} FAILED", err=True)
    for line in failure_report(result):
        click.echo(line, err=True)
    sys.exit(1)


def cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"
