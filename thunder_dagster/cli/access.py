"""Access to the model server: API keys (create, list, revoke) and the audit log."""

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import click

from thunder_dagster.access.keys import SCOPES
from thunder_dagster.cli.workspace import AgentId, Workspace, as_json, cli_actor, echo_json


@contextmanager
def key_store() -> Iterator:
    """The keys and audit log of the workspace's query-log store."""
    from thunder_dagster.access.keys import KeyStore
    from thunder_dagster.feedback.store import QueryStore

    with QueryStore.open(Workspace.resolve().query_db_url) as store:
        yield KeyStore(store.engine)


@click.group()
def keys() -> None:
    """API keys of the model server: create, list, revoke (stored hashed in the query-log
    store; every change is in the audit log)."""


@keys.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    required=True,
    type=click.Choice(SCOPES),
    help="What the key may do (repeat for several): generate (and search), feedback, admin, "
    "metrics (/metrics and the agents /healthz names, for Prometheus), upload (documents).",
)
@click.option("--agent", "agents", multiple=True, type=AgentId, help="Only these agents (repeat).")
@click.option(
    "--trust-user-ids",
    is_flag=True,
    help="The key's caller names its end users (a product's backend): their user_id then "
    "decides the A/B arm; without it the key is the user.",
)
def keys_create(name: str, scopes, agents, trust_user_ids: bool) -> None:
    """Make a key; its token is printed once, and only its hash is kept."""
    agents = list(agents)
    reach = f" for {', '.join(agents)}" if agents else ""
    with key_store() as store:
        key, token = store.create(name, list(scopes), agents or None, trust_user_ids)
        detail = f"{name}: {', '.join(key.scopes)}{reach}"
        store.record(cli_actor(), "key.create", f"key:{key.id}", uuid.uuid4().hex, "ok", detail)
    click.echo(token)
    click.echo(
        f"key {key.id} ({name}): {', '.join(key.scopes)}; keep the token above, it is not "
        "shown again. A running server accepts it within seconds.",
        err=True,
    )


@keys.command("list")
@as_json
def keys_list(as_json: bool) -> None:
    """Every key: id, name, scopes, agents, created, revoked (never the secret)."""
    from thunder_dagster.status import render_table

    with key_store() as store:
        found = store.listed()
    if as_json:
        echo_json(found)
        return
    if not found:
        click.echo("no API keys: the server runs open on loopback only")
        return
    rows = [
        [
            k.id,
            k.name,
            ",".join(k.scopes),
            ",".join(k.agents) if k.agents else "all",
            "yes" if k.trusts_user_ids else "no",
            f"{k.created_at:%Y-%m-%d %H:%M} UTC",
            f"{k.revoked_at:%Y-%m-%d %H:%M} UTC" if k.revoked_at else "-",
        ]
        for k in found
    ]
    headers = ["id", "name", "scopes", "agents", "user ids", "created", "revoked"]
    click.echo(render_table(rows, headers))


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke a key: servers refuse it within seconds."""
    from thunder_dagster.access.keys import AccessError

    with key_store() as store:
        try:
            key = store.revoke(key_id)
        except AccessError as error:
            store.record(cli_actor(), "key.revoke", f"key:{key_id}", uuid.uuid4().hex, "failed")
            raise click.ClickException(str(error)) from error
        store.record(cli_actor(), "key.revoke", f"key:{key.id}", uuid.uuid4().hex, "ok")
    click.echo(f"key {key.id} ({key.name}) revoked")


@click.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
@as_json
def audit(limit: int, as_json: bool) -> None:
    """The audit log, newest first: when, who, what, on what, the request id, the outcome
    (ok, failed, denied)."""
    from thunder_dagster.status import render_table

    with key_store() as store:
        entries = store.audit(limit)
    if as_json:
        echo_json(entries)
        return
    if not entries:
        click.echo("the audit log is empty")
        return
    rows = [
        [
            f"{e.at:%Y-%m-%d %H:%M:%S} UTC",
            e.actor,
            e.action,
            e.target,
            e.request_id[:12],
            e.outcome,
            e.detail or "",
        ]
        for e in entries
    ]
    headers = ["at", "actor", "action", "target", "request", "outcome", "detail"]
    click.echo(render_table(rows, headers))


@click.command()
@click.argument("user_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def forget(user_id: str, yes: bool) -> None:
    """Delete everything kept of USER_ID: their answers in the query log (under their own id
    or a trusted key's KEY:USER_ID), the ratings and grades of those answers, and their rows in
    the spool folder's files no live server holds. The audit log records it under a hash of
    the id."""
    from thunder_dagster.access.keys import KeyStore
    from thunder_dagster.feedback.retention import forget as forget_user
    from thunder_dagster.feedback.retention import user_hash
    from thunder_dagster.feedback.store import QueryStore
    from thunder_dagster.serving.spool import forget_in_spool

    if not yes:
        click.confirm(f"delete every answer and rating of {user_id!r}?", abort=True)
    ws = Workspace.resolve()
    with QueryStore.open(ws.query_db_url) as store:
        gone = forget_user(store.engine, user_id)
        spool = ws.home.root / "spool"
        lines, live = forget_in_spool(spool, user_id) if spool.is_dir() else (0, [])
        detail = (
            f"{gone.queries} answers, {gone.ratings} ratings, {gone.grades} grades, "
            f"{lines} spool lines"
        )
        KeyStore(store.engine).record(
            cli_actor(), "user.forget", f"user:{user_hash(user_id)}", uuid.uuid4().hex, "ok", detail
        )
    click.echo(f"forgot {user_id}: {detail}")
    if live:
        click.echo(
            f"{len(live)} spool files of running servers were left ({', '.join(live)}): run "
            "`thunder forget` again once their rows are in the store",
            err=True,
        )
