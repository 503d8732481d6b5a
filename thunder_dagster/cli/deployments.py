"""The deployment commands: rollback, undeploy, redeploy, compare, and versions (what compare
and rollback --to take). Each change is a run of its job, which the UI shows."""

import click

from thunder_dagster.cli.workspace import (
    AgentId,
    RemoteRun,
    Workspace,
    as_json,
    cli_actor,
    echo_json,
    finish,
)


def _champion(agent_id: str) -> str:
    """The version the agent's champion pointer names now."""
    from thunder_dagster.deployments.pointers import read_pointer

    deployment = read_pointer(Workspace.resolve().home.deployments_dir(agent_id))
    return deployment.version if deployment else "none"


@click.command()
@click.argument("agent_id", type=AgentId)
@click.option("--to", "to_version", help="An earlier champion's version [default: the one before]")
def rollback(agent_id: str, to_version: str | None) -> None:
    """Move AGENT_ID's champion back, one version or to VERSION: the pointer the server serves
    and the MLflow `champion` alias together, as a run of rollback_job the UI shows."""
    config = {"agent_id": agent_id, "to_version": to_version}
    result = Workspace.resolve().run_op_job("rollback_job", "roll_back_champion", config, agent_id)
    if result.success:
        click.echo(f"{agent_id}: champion is now {_champion(agent_id)}")
    finish(result, "rollback")


@click.command()
@click.argument("agent_id", type=AgentId)
@click.option("--reason", default="promoted by an operator", show_default=True)
def promote(agent_id: str, reason: str) -> None:
    """Make AGENT_ID's challenger its champion now, whatever the champion gate or its A/B test
    said: the pointer and the MLflow alias together, as a run of promote_job; the history
    keeps who asked and why."""
    config = {"agent_id": agent_id, "reason": reason, "requested_by": cli_actor()}
    result = Workspace.resolve().run_op_job("promote_job", "promote_challenger", config, agent_id)
    if result.success:
        click.echo(f"{agent_id}: champion is now {_champion(agent_id)} ({reason})")
    finish(result, "promote")


@click.command()
@click.argument("agent_id", type=AgentId)
@click.option("--reason", default="undeployed by an operator", show_default=True)
def undeploy(agent_id: str, reason: str) -> None:
    """Stop serving AGENT_ID: every model server answers 404 for it within its reload interval,
    and its MLflow serving aliases go. Nothing is deleted; `thunder redeploy` serves it again."""
    config = {"agent_id": agent_id, "reason": reason, "requested_by": cli_actor()}
    result = Workspace.resolve().run_op_job("undeploy_job", "undeploy_agent", config, agent_id)
    if result.success:
        click.echo(f"{agent_id}: undeployed ({reason})")
    finish(result, "undeploy")


@click.command()
@click.argument("agent_id", type=AgentId)
def redeploy(agent_id: str) -> None:
    """Serve an undeployed AGENT_ID again, from the versions it had."""
    config = {"agent_id": agent_id, "requested_by": cli_actor()}
    result = Workspace.resolve().run_op_job("redeploy_job", "redeploy_agent", config, agent_id)
    if result.success:
        click.echo(f"{agent_id}: served again, champion {_champion(agent_id)}")
    finish(result, "redeploy")


@click.command()
@click.argument("agent_id", type=AgentId)
@click.argument("version_a")
@click.argument("version_b")
@click.option("--prompts", default=8, show_default=True, type=click.IntRange(1, 64))
@click.option("--seed", default=0, show_default=True, type=int)
def compare(agent_id: str, version_a: str, version_b: str, prompts: int, seed: int) -> None:
    """VERSION_A and VERSION_B of AGENT_ID side by side on the same test split, prompts and
    seed: a materialization of model_comparison the UI shows, and a run in MLflow."""
    config = {"version_a": version_a, "version_b": version_b, "prompts": prompts, "seed": seed}
    result = Workspace.resolve().launch(
        "comparison_job", agent_id, ops={"model_comparison": {"config": config}}
    )
    if isinstance(result, RemoteRun) and result.success:
        click.echo(f"the comparison is model_comparison's latest materialization: {result.url}")
    elif result.success:
        comparison = result.output_for_node("model_comparison")
        _columns([["", comparison.a.version, comparison.b.version], *comparison.rows()])
        if hasattr(comparison, "confusion_rows"):  # two classifiers
            click.echo(
                f"\nconfusion matrices on {comparison.test_texts} test texts of labelled set "
                f"{comparison.dataset_version}:"
            )
            _columns([comparison.confusion_header(), *comparison.confusion_rows()])
            finish(result, "compare")
            return
        for prompt, first, second in zip(
            comparison.prompts, comparison.a.samples, comparison.b.samples, strict=True
        ):
            click.echo(f"\nprompt: {prompt!r}")
            click.echo(f"  {comparison.a.version}: {first!r}")
            click.echo(f"  {comparison.b.version}: {second!r}")
    finish(result, "compare")


def _columns(rows: list[list[str]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = zip(row, widths, strict=True)
        click.echo("  ".join(cell.ljust(width) for cell, width in cells).rstrip())


@click.command()
@click.argument("agent_id", type=AgentId)
@as_json
def versions(agent_id: str, as_json: bool) -> None:
    """AGENT_ID's released versions, newest first: family, test loss (a generator's) or
    accuracy and macro F1 (a classifier's, on its test split), parent, what made it, the roles
    pointing at it now (what `compare` and `rollback --to` take)."""
    from thunder_dagster.deployments.catalog import agent_versions
    from thunder_dagster.status import render_table

    home = Workspace.resolve().home
    models, deployments = home.models_dir(agent_id), home.deployments_dir(agent_id)
    if not (models.is_dir() or deployments.is_dir()):
        raise click.ClickException(f"agent {agent_id}: nothing was released for it")
    entries = agent_versions(models, deployments)
    if as_json:
        echo_json(entries)
        return
    rows = [
        [
            entry.version,
            entry.family or "-",
            f"{entry.test_loss:.4f}" if entry.test_loss is not None else "-",
            f"{entry.accuracy:.4f}" if entry.accuracy is not None else "-",
            f"{entry.macro_f1:.4f}" if entry.macro_f1 is not None else "-",
            entry.parent_version or "-",
            entry.change or "-",
            ",".join(entry.roles) or "-",
            entry.deployed_at or "-",
            entry.problem or "",
        ]
        for entry in entries
    ]
    headers = [
        *("version", "family", "test loss", "accuracy", "macro F1", "parent", "change"),
        *("roles", "deployed", "problem"),
    ]
    click.echo(render_table(rows, headers))
