"""The model server's commands: serve it, and drive it with synthetic users (simulate)."""

import json
from pathlib import Path

import click

from thunder_dagster.cli.workspace import AgentId
from thunder_dagster.home import Home


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--db-url",
    envvar="THUNDER_QUERY_DB_URL",
    help="SQLAlchemy URL of the query-log store [default: SQLite $THUNDER_HOME/queries.db]",
)
@click.option(
    "--challenger-share",
    default=0.2,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of users the challenger answers while one is deployed",
)
@click.option(
    "--teacher-threshold",
    default=0.5,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Below this confidence the agent's teacher, if it has one, answers instead",
)
def serve(
    host: str, port: int, db_url: str | None, challenger_share: float, teacher_threshold: float
) -> None:
    """Serve every deployed agent over HTTP (FastAPI on onnxruntime; no TensorFlow, no Dagster)."""
    import uvicorn

    from thunder_dagster import settings
    from thunder_dagster.serving.api.app import create_app
    from thunder_dagster.serving.state import ServerSettings

    home = Home.resolve()
    query_db_url = db_url or home.queries_db_url
    auth = serving_auth(host, query_db_url)
    spool = settings.SPOOL_DIR.value()
    server = ServerSettings(
        deployments_root=home.root / "deployments",
        query_db_url=query_db_url,
        retrieval_root=home.root / "retrieval",
        encoder_cache_dir=home.encoder_cache_dir,
        challenger_share=challenger_share,
        teacher_threshold=teacher_threshold,
        auth=auth,
        spool_dir=Path(spool) if spool else None,
        dagster_url=settings.DAGSTER_URL.value() or None,
        teacher=external_teacher(),
        open_hosts=frozenset({"localhost", "127.0.0.1", "::1", host.lower()}),
        **request_bounds(),
    )
    click.echo(f"serving {server.deployments_root} on http://{host}:{port}", err=True)
    if server.teacher is not None:
        click.echo(
            f"API B: {server.teacher.model} at {server.teacher.base_url} answers when an agent "
            f"without a local teacher is unsure (budget {server.teacher.budget_seconds:g} s)",
            err=True,
        )
    if auth == "open":
        click.echo(
            "open: no API keys exist, so any local caller may generate, search and rate "
            "(loopback only; `thunder keys create` turns keys on)",
            err=True,
        )
    uvicorn.run(create_app(server), host=host, port=port, log_level="warning", access_log=False)


def request_bounds() -> dict:
    """The server's bounds on a request's cost from the environment, each refused by name
    when it is not a whole number."""
    from thunder_dagster import settings

    try:
        return {
            "max_body_bytes": settings.whole_number(settings.MAX_BODY_BYTES),
            "max_waiting": settings.whole_number(settings.MAX_WAITING, least=0),
            "rate_per_minute": settings.whole_number(settings.RATE_LIMIT, least=0),
            "max_work_tokens": settings.whole_number(settings.MAX_WORK_TOKENS),
        }
    except ValueError as error:
        raise click.UsageError(str(error)) from error


def external_teacher():
    """API B's settings from the environment, or None when THUNDER_TEACHER_URL is unset."""
    from thunder_dagster import settings

    if not settings.TEACHER_URL.is_set():
        return None
    from thunder_dagster.serving.teacher import TeacherConfigError, settings_from_environment

    try:
        return settings_from_environment()
    except TeacherConfigError as error:
        raise click.UsageError(str(error)) from error


def serving_auth(host: str, query_db_url: str) -> str:
    """The server's auth: keys when any API key is active, open without keys on loopback;
    without keys anywhere else, refused with how to make one."""
    import ipaddress

    from thunder_dagster.access.keys import KeyStore
    from thunder_dagster.feedback.store import QueryStore

    try:
        with QueryStore.open(query_db_url) as store:
            active = KeyStore(store.engine).listed(include_revoked=False)
    except Exception as error:
        raise click.ClickException(
            f"the query-log store ({query_db_url.split('@')[-1]}) cannot be read to check the "
            f"API keys: {type(error).__name__}: {error}"
        ) from error
    if active:
        return "keys"
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise click.ClickException(
            f"refusing to listen on {host} without API keys: anyone who reaches it could rate "
            "any answer and choose their A/B arm. Make a key first (thunder keys create "
            "NAME --scope generate --scope feedback), or serve on 127.0.0.1."
        )
    return "open"


@click.command()
@click.argument("agent_id", type=AgentId)
@click.option("--queries", default=200, show_default=True, type=click.IntRange(min=1))
@click.option("--url", default="http://127.0.0.1:8000", show_default=True)
@click.option("--users", default=50, show_default=True, type=click.IntRange(min=1))
@click.option("--feedback-rate", default=0.6, show_default=True, type=click.FloatRange(0, 1))
@click.option("--concurrency", default=4, show_default=True, type=click.IntRange(1, 64))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--prefer-document-words",
    is_flag=True,
    help="Score by a hidden preference instead of confidence: 4-5 for an answer that spells "
    "two or more of the agent's frequent words, 1-2 otherwise",
)
def simulate(
    agent_id: str,
    queries: int,
    url: str,
    users: int,
    feedback_rate: float,
    concurrency: int,
    seed: int,
    prefer_document_words: bool,
) -> None:
    """Drive a live server with synthetic users: prompts from AGENT_ID's own documents, and
    feedback that follows each answer's confidence (or a hidden preference), so the loop can
    be watched end to end."""
    from thunder_dagster.serving.simulation import simulate as run_simulation

    try:
        summary = run_simulation(
            Home.resolve(),
            agent_id,
            url,
            queries,
            users,
            feedback_rate,
            concurrency,
            seed,
            click.echo,
            prefer_words=prefer_document_words,
        )
    except RuntimeError as error:
        raise click.ClickException(str(error)) from error
    click.echo(json.dumps(summary, indent=2))
