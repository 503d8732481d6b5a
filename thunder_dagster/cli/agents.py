"""Agents and their documents from the command line, as the admin API offers them over HTTP:
`thunder agents create|list|show` and `thunder upload AGENT FILE... [--category C]`. Both write
into the workspace's THUNDER_HOME directly; the upload sensor ingests what lands there."""

from pathlib import Path

import click

from thunder_dagster.cli.workspace import AgentId, Workspace
from thunder_dagster.home import CATEGORIES
from thunder_dagster.tasks.registry import TASKS


@click.group()
def agents() -> None:
    """Create agents and read their state."""


@agents.command("create")
@click.argument("agent_id", type=AgentId)
@click.option("--task", type=click.Choice(TASKS), default="generation", show_default=True)
@click.option("--name", "display_name", help="A display name for people.")
def agents_create(agent_id: str, task: str, display_name: str | None) -> None:
    """A new agent: its folders and agent.json."""
    from thunder_dagster.cli.workspace import cli_actor
    from thunder_dagster.tasks.agents import AgentExistsError, create_agent

    try:
        create_agent(Workspace.resolve().home, agent_id, task, display_name, cli_actor())
    except AgentExistsError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"agent {agent_id} ({task}) created: upload its documents with `thunder upload`")


@agents.command("list")
def agents_list() -> None:
    """Every agent: task, documents, what serves it."""
    from thunder_dagster.status import agent_status, render_table

    home = Workspace.resolve().home
    rows = [agent_status(home, agent_id).row()[:7] for agent_id in home.list_agents()]
    headers = ["agent", "task", "documents", "dataset", "index", "champion", "challenger"]
    click.echo(render_table(rows, headers) if rows else "no agents: thunder agents create ID")


@click.command()
@click.argument("agent_id", type=AgentId)
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option(
    "--category",
    type=click.Choice(CATEGORIES),
    default="reference",
    show_default=True,
    help="The folder the files go to.",
)
def upload(agent_id: str, files: tuple[str, ...], category: str) -> None:
    """Copy FILES into AGENT_ID's CATEGORY folder, each checked by its content and written
    atomically (the same bytes again change nothing); the upload sensor ingests them. A file
    that is refused is named with why; the others are still stored."""
    from thunder_dagster.documents.receiving import NoSuchAgent, UploadRefused, receive
    from thunder_dagster.documents.uploads import max_upload_bytes

    home = Workspace.resolve().home
    refused = 0
    for name in files:
        path = Path(name)
        try:
            with open(path, "rb") as handle:
                chunks = iter(lambda: handle.read(1 << 20), b"")
                stored = receive(home, agent_id, category, path.name, chunks, max_upload_bytes())
        except NoSuchAgent as error:
            raise click.ClickException(f"{error}: thunder agents create {agent_id}") from None
        except UploadRefused as error:
            refused += 1
            click.echo(f"refused {path}: {error}", err=True)
            continue
        state = "unchanged" if stored.unchanged else "stored"
        click.echo(
            f"{state} {category}/{stored.filename} ({stored.bytes} bytes, {stored.sha256[:12]})"
        )
    if refused:
        raise click.ClickException(f"{refused} of {len(files)} files refused")
