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

    @property
    def dagster_url(self) -> str | None:
        """The Dagster webserver runs go through (THUNDER_DAGSTER_URL); None: in process."""
        return settings.DAGSTER_URL.value() or None

    def launch(self, job_name: str, agent_id: str, ops: dict | None = None, **options):
        """A run of the job for the agent: through the webserver when one is configured (the
        daemon runs it), else in this process on this workspace's instance."""
        if self.dagster_url:
            return self.remote(job_name, agent_id, ops or {}, _partition_tags(agent_id, options))
        from thunder_dagster.definitions import defs
        from thunder_dagster.runtime.launch import run_job

        with self.instance() as instance:
            return run_job(defs.resolve_job_def(job_name), agent_id, instance, ops=ops, **options)

    def remote(self, job_name: str, agent_id: str, ops: dict, tags: dict[str, str]):
        """A run submitted to the webserver and watched until it ends, its status changes
        printed; RemoteError's message as a ClickException when the webserver refuses."""
        import time

        from thunder_dagster.serving.remote import TERMINAL, RemoteError, WebserverLauncher

        launcher = WebserverLauncher(self.dagster_url)
        tags = {"thunder/launched_by": "cli", **tags}
        try:
            state = launcher.submit(job_name, agent_id, ops, tags)
            click.echo(f"{job_name}: run {state.run_id} on {self.dagster_url}", err=True)
            shown = None
            while state.status not in TERMINAL:
                if state.status != shown:
                    click.echo(f"  {state.status}", err=True)
                    shown = state.status
                time.sleep(2)
                state = launcher.status(state.run_id)
        except RemoteError as error:
            raise click.ClickException(str(error)) from error
        return RemoteRun(state.run_id, state.status, f"{self.dagster_url}/runs/{state.run_id}")

    def run_op_job(self, job_name: str, op_name: str, config: dict, agent_id: str):
        """One run of a one-op job (through the webserver when one is configured, else in
        this process on the instance), tagged with its agent so the UI filters by it."""
        from thunder_dagster.definitions import defs

        if self.dagster_url:
            ops = {op_name: {"config": config}}
            return self.remote(job_name, agent_id, ops, {"thunder/agent": agent_id})
        with self.instance() as instance:
            return defs.resolve_job_def(job_name).execute_in_process(
                run_config={"ops": {op_name: {"config": config}}},
                instance=instance,
                tags={"thunder/launched_by": "cli", "thunder/agent": agent_id},
                raise_on_error=False,
            )


def _partition_tags(agent_id: str, options: dict) -> dict[str, str]:
    """The tags that make a submitted run one of the agent's partition (or of a multi-partition
    key's, with its dimensions), with the options' own tags."""
    key = options.get("partition_key") or agent_id
    tags = {**options.get("tags", {}), "dagster/partition": str(key)}
    for dimension, value in getattr(key, "keys_by_dimension", {}).items():
        tags[f"dagster/partition/{dimension}"] = value
    return tags


@dataclass(frozen=True)
class RemoteRun:
    """How a run the webserver ran ended: its outputs stay on the instance the UI shows."""

    run_id: str
    status: str
    url: str

    @property
    def success(self) -> bool:
        return self.status == "SUCCESS"


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
    if isinstance(result, RemoteRun):
        click.echo(f"{what}: run {result.run_id} {result.status}: see {result.url}", err=True)
        sys.exit(1)
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
