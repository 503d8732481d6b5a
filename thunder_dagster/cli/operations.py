"""What an operator watches: each agent's state (status) and the alerts."""

import click

from thunder_dagster.cli.workspace import AgentId, Workspace, as_json, echo_json


def _add_trigger_decisions(ws: Workspace, statuses) -> str | None:
    """Fill in each agent's latest trigger decision from the query-log store's analyses; a
    sentence saying why not when the store cannot be read."""
    from thunder_dagster.feedback.rules import Decision
    from thunder_dagster.feedback.store import QueryStore

    if not ws.has_query_store:
        return None
    try:
        with QueryStore.open(ws.query_db_url) as store:
            for status in statuses:
                analysis = store.latest_analysis(status.agent_id)
                if analysis is not None:
                    change = Decision.from_json(analysis.decision).change
                    if change != "none":
                        status.pending_trigger = f"{change} ({analysis.day.isoformat()})"
    except Exception as error:
        return f"the query-log store could not be read ({type(error).__name__}: {error})"
    return None


def _add_instance_state(ws: Workspace, statuses) -> str | None:
    """Fill in the last training run (of any task's model, the reward model's included) from
    the Dagster instance; a sentence saying why not when the instance cannot be read."""
    from datetime import UTC

    import dagster as dg

    from thunder_dagster.tasks.registry import training_jobs

    jobs = set(training_jobs())
    try:
        with ws.instance() as instance:
            for status in statuses:
                runs = instance.get_run_records(
                    dg.RunsFilter(tags={"dagster/partition": status.agent_id}), limit=50
                )
                trainings = [r for r in runs if r.dagster_run.job_name in jobs]
                if trainings:
                    latest = trainings[0]
                    status.last_training = (
                        f"{latest.create_timestamp.astimezone(UTC):%Y-%m-%d %H:%M UTC} "
                        f"{latest.dagster_run.job_name} {latest.dagster_run.status.value}"
                    )
    except Exception as error:
        return f"the Dagster instance could not be read ({type(error).__name__}: {error})"
    return None


@click.command()
@click.argument("agent_id", required=False, type=AgentId)
@as_json
def status(agent_id: str | None, as_json: bool) -> None:
    """Each agent's state (or AGENT_ID's): documents, dataset version, champion and challenger,
    the last training run and the latest trigger decision of the daily analysis."""
    from thunder_dagster.status import agent_status, render_table

    ws = Workspace.resolve()
    if agent_id is not None:
        ws.require_folder(agent_id)
    agents = [agent_id] if agent_id else ws.home.list_agents()
    if not agents and not as_json:
        click.echo(f"no agents under {ws.home.agents_dir}: put files under <agent_id>/reference/")
        return
    statuses = [agent_status(ws.home, agent) for agent in agents]
    problem = _add_instance_state(ws, statuses)
    store_problem = _add_trigger_decisions(ws, statuses)
    if as_json:
        echo_json(statuses)
    else:
        click.echo(render_table([status.row() for status in statuses]))
    for status in statuses:
        for line in status.problems:
            click.echo(f"{status.agent_id}: {line}", err=True)
    if problem:
        click.echo(f"(last training not shown: {problem})", err=True)
    if store_problem:
        click.echo(f"(trigger decisions not shown: {store_problem})", err=True)


@click.command()
@click.option("--open", "open_only", is_flag=True, help="Only the alerts that are open now.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
@as_json
def alerts(open_only: bool, limit: int, as_json: bool) -> None:
    """Open alerts, then the most recent resolved ones: rule, subject, since when, and what
    each said; with where its notifications went. alert_sensor evaluates the rules."""
    from thunder_dagster.feedback.store import QueryStore
    from thunder_dagster.monitoring.incidents import AlertLog

    ws = Workspace.resolve()
    if not ws.has_query_store:
        if as_json:
            echo_json([])
            return
        click.echo("no alerts: the query-log store does not exist yet (the alert sensor makes it)")
        return
    with QueryStore.open(ws.query_db_url) as store:
        log = AlertLog(store.engine)
        found = log.alerts(open_only=open_only, limit=limit)
        deliveries = {alert.id: log.deliveries(alert.id) for alert in found}
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("no open alerts" if open_only else "no alerts recorded")
        return
    _print_alerts(found, deliveries)


def _print_alerts(found, deliveries) -> None:
    from thunder_dagster.status import render_table

    rows = []
    for alert in found:
        sent = deliveries[alert.id]
        delivered = sum(1 for d in sent if d.delivered)
        rows.append(
            [
                alert.id,
                "open" if alert.is_open else "resolved",
                alert.rule,
                alert.subject,
                alert.severity,
                f"{alert.opened_at:%Y-%m-%d %H:%M} UTC",
                f"{alert.resolved_at:%Y-%m-%d %H:%M} UTC" if alert.resolved_at else "-",
                f"{delivered}/{len(sent)}" if sent else "-",
                alert.summary,
            ]
        )
    headers = ["id", "state", "rule", "subject", "severity", "opened", "resolved", "sent"]
    click.echo(render_table(rows, [*headers, "summary"]))
    for alert in found:
        for delivery in deliveries[alert.id]:
            if not delivery.delivered:
                click.echo(
                    f"alert {alert.id} {delivery.event}: not delivered to {delivery.channel} "
                    f"after {delivery.attempts} tries: {delivery.error}",
                    err=True,
                )
