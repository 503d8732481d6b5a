"""The `thunder` command: runs materializations through Dagster on the configured instance."""

import contextlib
import json
import os
import shutil
import sys
from pathlib import Path

import click

from thunder_dagster import settings
from thunder_dagster.home import CATEGORIES, Home, InvalidAgentIdError, validate_agent_id
from thunder_dagster.tasks import LABEL_TASKS, TASKS
from thunder_dagster.times import utc_now

REPO_ROOT = Path(__file__).resolve().parents[1]


def _home() -> Home:
    """THUNDER_HOME, with DAGSTER_HOME beneath it holding the repo's dagster.yaml."""
    home = Home.resolve()
    # Set for the run and step processes Dagster starts, which resolve the same home.
    os.environ[settings.HOME.name] = str(home.root)
    dagster_home = Path(os.environ.setdefault(settings.DAGSTER_HOME.name, str(home.dagster_home)))
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


def _require_folder(home: Home, agent_id: str) -> None:
    if not home.agent_dir(agent_id).is_dir():
        raise click.ClickException(
            f"no folder {home.agent_dir(agent_id)}: put the agent's files under "
            f"{', '.join(CATEGORIES)} there first"
        )


def print_ingest_summary(home: Home, agent_id: str) -> None:
    report_path = home.ingest_report_path(agent_id)
    if not report_path.exists():
        return
    report = json.loads(report_path.read_text())
    summary = ", ".join(
        f"{count} {status}"
        for status, count in report["summary"].items()
        if count or status != "labelled"  # an agent without labelled uploads reads as before
    )
    click.echo(f"agent {agent_id}: {len(report['files'])} files: {summary}")
    for entry in report["files"]:
        if entry["status"] == "ok":
            detail = f"{entry['chars']} chars, {entry['chunks']} chunks"
        elif entry["status"] == "labelled":
            left_out = entry.get("bad_rows", [])
            detail = f"{entry['examples']} labelled examples" + "".join(
                f"; line {row['line']}: {row['reason']}" for row in left_out[:5]
            )
        else:
            detail = entry["reason"]
        click.echo(f"  {entry['status']:8} {entry['path']}  ({detail})")
    click.echo(f"report: {report_path}")
    from thunder_dagster.documents.datasets import latest_dataset

    dataset = latest_dataset(home.processed_dir(agent_id))
    if dataset is not None:
        click.echo(f"dataset {dataset.version}: {dataset.rows} chunks in {dataset.path}")


def launch(job_name: str, agent_id: str, **options):
    from thunder_dagster.definitions import defs
    from thunder_dagster.runtime.launch import run_job

    return run_job(defs.resolve_job_def(job_name), agent_id, **options)


def _finish(result, what: str) -> None:
    if result.success:
        click.echo(f"{what}: run {result.run_id} succeeded")
        return
    from thunder_dagster.runtime.launch import failure_report

    click.echo(f"{what}: run {result.run_id} FAILED", err=True)
    for line in failure_report(result):
        click.echo(line, err=True)
    sys.exit(1)


@click.group()
def main() -> None:
    """thunder-dagster: documents in, a trained and deployed model out."""


TRAINING_JOBS = {"training_job", "pipeline_job", "fine_tune_job", "distillation_job"}


def _add_trigger_decisions(home: Home, statuses) -> str | None:
    """Fill in each agent's latest trigger decision from the query-log store's analyses; a
    sentence saying why not when the store cannot be read."""
    from thunder_dagster import settings
    from thunder_dagster.feedback.rules import Decision
    from thunder_dagster.feedback.store import QueryStore

    url = settings.QUERY_DB_URL.value() or home.queries_db_url
    if not settings.QUERY_DB_URL.is_set() and not home.queries_db.exists():
        return None
    try:
        with QueryStore.open(url) as store:
            for status in statuses:
                analysis = store.latest_analysis(status.agent_id)
                if analysis is not None:
                    change = Decision.from_json(analysis.decision).change
                    if change != "none":
                        status.pending_trigger = f"{change} ({analysis.day.isoformat()})"
    except Exception as error:
        return f"the query-log store could not be read ({type(error).__name__}: {error})"
    return None


def _add_instance_state(statuses) -> str | None:
    """Fill in the last training run from the Dagster instance; a sentence saying why not when
    the instance cannot be read."""
    from datetime import UTC

    import dagster as dg

    try:
        with dg.DagsterInstance.get() as instance:
            for status in statuses:
                runs = instance.get_run_records(
                    dg.RunsFilter(tags={"dagster/partition": status.agent_id}), limit=50
                )
                trainings = [r for r in runs if r.dagster_run.job_name in TRAINING_JOBS]
                if trainings:
                    latest = trainings[0]
                    status.last_training = (
                        f"{latest.create_timestamp.astimezone(UTC):%Y-%m-%d %H:%M UTC} "
                        f"{latest.dagster_run.job_name} {latest.dagster_run.status.value}"
                    )
    except Exception as error:
        return f"the Dagster instance could not be read ({type(error).__name__}: {error})"
    return None


@main.command()
@click.option("--open", "open_only", is_flag=True, help="Only the alerts that are open now.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 1000))
def alerts(open_only: bool, limit: int) -> None:
    """Open alerts, then the most recent resolved ones: rule, subject, since when, and what
    each said; with where its notifications went. alert_sensor evaluates the rules."""
    from thunder_dagster import settings
    from thunder_dagster.feedback.store import QueryStore
    from thunder_dagster.monitoring.incidents import AlertLog
    from thunder_dagster.status import render_table

    home = _home()
    url = settings.QUERY_DB_URL.value() or home.queries_db_url
    if not settings.QUERY_DB_URL.is_set() and not home.queries_db.exists():
        click.echo("no alerts: the query-log store does not exist yet (the alert sensor makes it)")
        return
    with QueryStore.open(url) as store:
        log = AlertLog(store.engine)
        found = log.alerts(open_only=open_only, limit=limit)
        deliveries = {alert.id: log.deliveries(alert.id) for alert in found}
    if not found:
        click.echo("no open alerts" if open_only else "no alerts recorded")
        return
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


@main.command()
@click.argument("agent_id", required=False)
def status(agent_id: str | None) -> None:
    """Each agent's state (or AGENT_ID's): documents, dataset version, champion and challenger,
    the last training run and the latest trigger decision of the daily analysis."""
    from thunder_dagster.status import agent_status, render_table

    home = _home()
    if agent_id is not None:
        agent_id = _agent(agent_id)
        _require_folder(home, agent_id)
    agents = [agent_id] if agent_id else home.list_agents()
    if not agents:
        click.echo(f"no agents under {home.agents_dir}: put files under <agent_id>/reference/")
        return
    statuses = [agent_status(home, agent) for agent in agents]
    problem = _add_instance_state(statuses)
    store_problem = _add_trigger_decisions(home, statuses)
    click.echo(render_table([status.row() for status in statuses]))
    for status in statuses:
        for line in status.problems:
            click.echo(f"{status.agent_id}: {line}", err=True)
    if problem:
        click.echo(f"(last training not shown: {problem})", err=True)
    if store_problem:
        click.echo(f"(trigger decisions not shown: {store_problem})", err=True)


@main.command()
@click.argument("agent_id")
def ingest(agent_id: str) -> None:
    """Ingest AGENT_ID's uploads now: documents, chunks and the training dataset CSV.

    Always starts a new run, also for content whose earlier run failed.
    """
    agent_id = _agent(agent_id)
    home = _home()
    _require_folder(home, agent_id)
    result = launch("ingest_job", agent_id)
    print_ingest_summary(home, agent_id)
    _finish(result, "ingest")


def print_training_summary(home: Home, agent_id: str, prompt: str | None = None) -> None:
    from thunder_dagster.deployments.pointers import read_pointer
    from thunder_dagster.modeling.cards import ModelCard

    deployment = read_pointer(home.deployments_dir(agent_id))
    if deployment is None:
        click.echo(f"agent {agent_id}: nothing deployed")
        return
    card = ModelCard.read(deployment.model_dir)
    split, loss = card.reported_loss()
    if card.task in LABEL_TASKS and card.classification:
        measured = card.classification
        click.echo(
            f"deployed {agent_id} {deployment.version} ({card.task} over {len(card.labels)} "
            f"labels, registry version {deployment.registry_version}): test accuracy "
            f"{measured['accuracy']:.3f}, macro F1 {measured['macro_f1']:.3f} (always "
            f"{measured['majority_label']!r}: {measured['majority_accuracy']:.3f} / "
            f"{measured['majority_macro_f1']:.3f})"
        )
    else:
        click.echo(
            f"deployed {agent_id} {deployment.version} ({deployment.family}, registry version "
            f"{deployment.registry_version}): {split} loss {loss:.4f} "
            f"nats/char, unigram baseline {card.metrics.unigram_loss:.4f}"
        )
    click.echo(f"  model: {deployment.onnx_path}")
    if card.mlflow_run_id:
        click.echo(
            f"  MLflow run {card.mlflow_run_id} in {home.mlflow_dir} "
            f"(mlflow ui --backend-store-uri {home.mlflow_db_url})"
        )
    if prompt is not None:
        from thunder_dagster.serving.generation import generate, load_deployed

        sample = generate(load_deployed(home.deployments_dir(agent_id)), prompt, 200, 0.8, seed=0)
        click.echo(f"  sample after {prompt!r}:\n{prompt}{sample.text}")


@main.command()
@click.argument("agent_id")
@click.option("--trials", type=click.IntRange(min=1), help="TPE trials to finish")
@click.option(
    "--minutes",
    type=click.FloatRange(min=0.1),
    help="Wall-clock budget of the whole run: ingest, search, training, export and deployment",
)
def train(agent_id: str, trials: int | None, minutes: float | None) -> None:
    """Ingest AGENT_ID's uploads and train, verify and deploy its model now, within --minutes."""
    started = utc_now()
    agent_id = _agent(agent_id)
    home = _home()
    _require_folder(home, agent_id)
    from thunder_dagster.training_plan import classifier_ops, training_ops

    if _task_of(home, agent_id) in LABEL_TASKS:
        ops = classifier_ops(trials, minutes, started)
        result = launch("classifier_pipeline_job", agent_id, ops=ops)
    else:
        ops = training_ops(trials, minutes, started=started)
        result = launch("pipeline_job", agent_id, ops=ops)
    print_ingest_summary(home, agent_id)
    if result.success:
        print_training_summary(home, agent_id)
    _finish(result, "train")


def _task_of(home: Home, agent_id: str) -> str:
    from thunder_dagster.tasks import AgentSettingsError, read_task

    try:
        return read_task(home.agent_dir(agent_id))
    except AgentSettingsError as error:
        raise click.ClickException(str(error)) from error


@main.command()
@click.argument("agent_id")
@click.argument("task_type", required=False, type=click.Choice(TASKS))
def task(agent_id: str, task_type: str | None) -> None:
    """Show AGENT_ID's task, or set it to TASK_TYPE (seed 001's model type).

    classification and sentiment train a classifier on the agent's labelled uploads (CSV with
    text and label columns, or JSONL objects); the others a text generator."""
    from thunder_dagster.tasks import write_task

    agent_id = _agent(agent_id)
    home = Home.resolve()
    if task_type is None:
        click.echo(_task_of(home, agent_id))
        return
    home.create_agent(agent_id)
    path = write_task(home.agent_dir(agent_id), task_type)
    click.echo(f"agent {agent_id}: task {task_type} ({path})")


def _deployed_for(agent_id: str, classifier: bool):
    """The agent's deployed model, refused by name when its task is not the command's."""
    from thunder_dagster.serving.generation import NoDeploymentError, load_deployed

    try:
        model = load_deployed(Home.resolve().deployments_dir(agent_id))
    except NoDeploymentError as error:
        raise click.ClickException(str(error)) from error
    if (model.task in LABEL_TASKS) != classifier:
        answering = "classify" if model.task in LABEL_TASKS else "generate"
        raise click.ClickException(
            f"agent {agent_id} has the task {model.task}: `thunder {answering}` answers it"
        )
    return model


@main.command()
@click.argument("agent_id")
@click.argument("text")
def classify(agent_id: str, text: str) -> None:
    """The label AGENT_ID's deployed classifier gives TEXT, with every label's probability."""
    from thunder_dagster.serving.classification import classify as predict

    agent_id = _agent(agent_id)
    model = _deployed_for(agent_id, classifier=True)
    label, probabilities = predict(model, text)
    click.echo(label)
    for name, probability in sorted(probabilities.items(), key=lambda item: -item[1]):
        click.echo(f"  {probability:.3f}  {name}", err=True)


@main.command()
@click.argument("agent_id")
@click.argument("prompt")
@click.option("--tokens", default=200, show_default=True, type=click.IntRange(1, 4096))
@click.option("--temperature", default=0.8, show_default=True, type=click.FloatRange(min=0))
@click.option("--seed", type=int, help="Seed of the sampling, for a repeatable answer")
def generate(agent_id: str, prompt: str, tokens: int, temperature: float, seed: int | None):
    """Continue PROMPT with AGENT_ID's deployed model (onnxruntime; TensorFlow is not loaded)."""
    from thunder_dagster.serving.generation import generate as sample

    agent_id = _agent(agent_id)
    model = _deployed_for(agent_id, classifier=False)
    result = sample(model, prompt, tokens, temperature, seed)
    click.echo(prompt + result.text)
    click.echo(
        f"[{agent_id} {model.deployment.version}, confidence {result.confidence:.3f}]", err=True
    )


@main.command()
@click.argument("agent_id")
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, 100))
def search(agent_id: str, query: str, k: int) -> None:
    """The chunks of AGENT_ID's documents nearest QUERY, from the index the server serves."""
    from thunder_dagster.retrieval.encoder import (
        EncoderFiles,
        EncoderUnavailableError,
        SentenceEncoder,
    )
    from thunder_dagster.retrieval.index import (
        IndexUnavailableError,
        RetrievalIndex,
        pointed_version,
    )

    agent_id = _agent(agent_id)
    home = Home.resolve()
    version = pointed_version(home.retrieval_dir(agent_id))
    if not query.strip():
        raise click.BadParameter("the query is blank", param_hint="QUERY")
    if version is None:
        raise click.ClickException(
            f"agent {agent_id} has no retrieval index yet: run `thunder ingest {agent_id}`"
        )
    try:
        index = RetrievalIndex(home.retrieval_dir(agent_id) / "indexes" / version)
        encoder = SentenceEncoder(EncoderFiles.packaged(), home.encoder_cache_dir, threads=1)
    except (IndexUnavailableError, EncoderUnavailableError) as error:
        raise click.ClickException(str(error)) from error
    for rank, hit in enumerate(index.search(query, encoder.encode([query])[0], k), start=1):
        chunk = hit.chunk
        click.echo(
            f"{rank}. {chunk.category}/{chunk.filename} [{chunk.start}:{chunk.end}] "
            f"score {hit.score:.4f} ({hit.found_by})"
        )
        click.echo("   " + " ".join(chunk.text.split())[:200])


def _run_op_job(job_name: str, op_name: str, config: dict):
    """One run of a one-op job in this process, on the instance (the UI shows it)."""
    import dagster as dg

    from thunder_dagster.definitions import defs

    with dg.DagsterInstance.get() as instance:
        return defs.resolve_job_def(job_name).execute_in_process(
            run_config={"ops": {op_name: {"config": config}}},
            instance=instance,
            tags={"thunder/launched_by": "cli"},
            raise_on_error=False,
        )


@main.command()
@click.argument("agent_id")
@click.option("--to", "to_version", help="An earlier champion's version [default: the one before]")
def rollback(agent_id: str, to_version: str | None) -> None:
    """Move AGENT_ID's champion back, one version or to VERSION: the pointer the server serves
    and the MLflow `champion` alias together, as a run of rollback_job the UI shows."""
    agent_id = _agent(agent_id)
    _home()
    config = {"agent_id": agent_id, "to_version": to_version}
    result = _run_op_job("rollback_job", "roll_back_champion", config)
    if result.success:
        click.echo(f"{agent_id}: champion is now {result.output_for_node('roll_back_champion')}")
    _finish(result, "rollback")


@main.command()
@click.argument("agent_id")
@click.option("--reason", default="undeployed by an operator", show_default=True)
def undeploy(agent_id: str, reason: str) -> None:
    """Stop serving AGENT_ID: every model server answers 404 for it within its reload interval,
    and its MLflow serving aliases go. Nothing is deleted; `thunder redeploy` serves it again."""
    agent_id = _agent(agent_id)
    _home()
    config = {"agent_id": agent_id, "reason": reason, "requested_by": _cli_actor()}
    result = _run_op_job("undeploy_job", "undeploy_agent", config)
    if result.success:
        click.echo(f"{agent_id}: undeployed ({reason})")
    _finish(result, "undeploy")


@main.command()
@click.argument("agent_id")
def redeploy(agent_id: str) -> None:
    """Serve an undeployed AGENT_ID again, from the versions it had."""
    agent_id = _agent(agent_id)
    _home()
    result = _run_op_job(
        "redeploy_job", "redeploy_agent", {"agent_id": agent_id, "requested_by": _cli_actor()}
    )
    if result.success:
        click.echo(f"{agent_id}: served again, champion {result.output_for_node('redeploy_agent')}")
    _finish(result, "redeploy")


@main.command()
@click.argument("agent_id")
@click.argument("version_a")
@click.argument("version_b")
@click.option("--prompts", default=8, show_default=True, type=click.IntRange(1, 64))
@click.option("--seed", default=0, show_default=True, type=int)
def compare(agent_id: str, version_a: str, version_b: str, prompts: int, seed: int) -> None:
    """VERSION_A and VERSION_B of AGENT_ID side by side on the same test split, prompts and
    seed: a materialization of model_comparison the UI shows, and a run in MLflow."""
    import dagster as dg

    from thunder_dagster.definitions import defs
    from thunder_dagster.runtime.partitions import agents

    agent_id = _agent(agent_id)
    _home()
    config = {"version_a": version_a, "version_b": version_b, "prompts": prompts, "seed": seed}
    with dg.DagsterInstance.get() as instance:
        if not instance.has_dynamic_partition(agents.name, agent_id):
            instance.add_dynamic_partitions(agents.name, [agent_id])
        result = defs.resolve_job_def("comparison_job").execute_in_process(
            run_config={"ops": {"model_comparison": {"config": config}}},
            instance=instance,
            partition_key=agent_id,
            tags={"thunder/launched_by": "cli"},
            raise_on_error=False,
        )
    if result.success:
        comparison = result.output_for_node("model_comparison")
        rows = [["", comparison.a.version, comparison.b.version], *comparison.rows()]
        widths = [max(len(row[column]) for row in rows) for column in range(3)]
        for row in rows:
            cells = zip(row, widths, strict=True)
            click.echo("  ".join(cell.ljust(width) for cell, width in cells).rstrip())
        for prompt, first, second in zip(
            comparison.prompts, comparison.a.samples, comparison.b.samples, strict=True
        ):
            click.echo(f"\nprompt: {prompt!r}")
            click.echo(f"  {comparison.a.version}: {first!r}")
            click.echo(f"  {comparison.b.version}: {second!r}")
    _finish(result, "compare")


@main.command()
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

    from thunder_dagster.serving.app import ServerSettings, create_app

    home = Home.resolve()
    query_db_url = db_url or home.queries_db_url
    auth = _serving_auth(host, query_db_url)
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
        teacher=_external_teacher(),
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


def _external_teacher():
    """API B's settings from the environment, or None when THUNDER_TEACHER_URL is unset."""
    if not settings.TEACHER_URL.is_set():
        return None
    from thunder_dagster.serving.teacher import TeacherConfigError, settings_from_environment

    try:
        return settings_from_environment()
    except TeacherConfigError as error:
        raise click.UsageError(str(error)) from error


def _serving_auth(host: str, query_db_url: str) -> str:
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


def _key_store():
    from thunder_dagster.access.keys import KeyStore
    from thunder_dagster.feedback.store import QueryStore

    home = _home()
    store = QueryStore.open(settings.QUERY_DB_URL.value() or home.queries_db_url)
    return store, KeyStore(store.engine)


def _cli_actor() -> str:
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


@main.group()
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
    type=click.Choice(["generate", "feedback", "admin"]),
    help="What the key may do (repeat for several): generate (and search), feedback, admin.",
)
@click.option("--agent", "agents", multiple=True, help="Only these agents (repeat); default all.")
@click.option(
    "--trust-user-ids",
    is_flag=True,
    help="The key's caller names its end users (a product's backend): their user_id then "
    "decides the A/B arm; without it the key is the user.",
)
def keys_create(name: str, scopes, agents, trust_user_ids: bool) -> None:
    """Make a key; its token is printed once, and only its hash is kept."""
    import uuid

    agents = [_agent(agent) for agent in agents]
    store, keys = _key_store()
    with store:
        key, token = keys.create(name, list(scopes), agents or None, trust_user_ids)
        keys.record(
            _cli_actor(),
            "key.create",
            f"key:{key.id}",
            uuid.uuid4().hex,
            "ok",
            f"{name}: {', '.join(key.scopes)}" + (f" for {', '.join(agents)}" if agents else ""),
        )
    click.echo(token)
    click.echo(
        f"key {key.id} ({name}): {', '.join(key.scopes)}; keep the token above, it is not "
        "shown again. A running server accepts it within seconds.",
        err=True,
    )


@keys.command("list")
def keys_list() -> None:
    """Every key: id, name, scopes, agents, created, revoked (never the secret)."""
    from thunder_dagster.status import render_table

    store, keys = _key_store()
    with store:
        found = keys.listed()
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
    import uuid

    from thunder_dagster.access.keys import AccessError

    store, keys = _key_store()
    with store:
        try:
            key = keys.revoke(key_id)
        except AccessError as error:
            keys.record(_cli_actor(), "key.revoke", f"key:{key_id}", uuid.uuid4().hex, "refused")
            raise click.ClickException(str(error)) from error
        keys.record(_cli_actor(), "key.revoke", f"key:{key.id}", uuid.uuid4().hex, "ok")
    click.echo(f"key {key.id} ({key.name}) revoked")


@main.command()
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 10000))
def audit(limit: int) -> None:
    """The audit log of admin actions, newest first: when, who, what, on what, the request id,
    the outcome."""
    from thunder_dagster.status import render_table

    store, keys = _key_store()
    with store:
        entries = keys.audit(limit)
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


@main.command()
@click.argument("agent_id")
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

    agent_id = _agent(agent_id)
    _home()
    if day is None:
        day = datetime.now(ZoneInfo(ANALYSIS_TIMEZONE)) - timedelta(days=1)
    day_key = day.strftime("%Y-%m-%d")
    try:
        result = launch(
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
        _finish(result, "analyze")
    decision = result.output_for_node("training_triggers")
    stats = result.output_for_node("query_log_stats")
    click.echo(
        json.dumps(
            {
                "agent_id": agent_id,
                "day": day_key,
                "window_utc": [stats.window_start.isoformat(), stats.window_end.isoformat()],
                "rule": decision.change,
                "inputs": decision.inputs,
                "reason": decision.reason,
                "learning_rate": decision.learning_rate,
            },
            indent=2,
        )
    )


@main.command()
@click.argument("agent_id")
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

    agent_id = _agent(agent_id)
    home = Home.resolve()
    try:
        summary = run_simulation(
            home,
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


@main.command()
@click.argument("agent_id")
@click.option("--trials", type=click.IntRange(min=1), help="TPE trials of the reward head")
def reward(agent_id: str, trials: int | None) -> None:
    """Train AGENT_ID's reward model now on its rated answers (and API B's grades, when
    THUNDER_TEACHER_URL is set); served for best_of once its checks pass."""
    agent_id = _agent(agent_id)
    home = _home()
    ops = {"reward_model": {"config": {"trials": trials}}} if trials else None
    result = launch("reward_job", agent_id, ops=ops)
    if result.success:
        card = home.deployments_dir(agent_id) / "reward.json"
        click.echo(f"reward model of {agent_id}: {card if card.exists() else 'not served'}")
    _finish(result, "reward")


DEMO_PROMPT = "The bakery"


@main.command()
@click.option("--agent", "agent_id", default="sample", show_default=True)
@click.option("--trials", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--minutes", default=6.0, show_default=True, type=click.FloatRange(min=0.1))
def demo(agent_id: str, trials: int, minutes: float) -> None:
    """The main job on the bundled sample agent: its documents go through the whole graph to a
    deployed model, and the deployed model writes a sample."""
    _run_demo(_agent(agent_id), trials, minutes)


def _run_demo(agent_id: str, trials: int, minutes: float, parallel: int | None = None) -> None:
    home = _home()
    home.create_agent(agent_id)
    from thunder_dagster.samples import copy_sample_agent
    from thunder_dagster.training_plan import training_ops

    copied = copy_sample_agent(home, agent_id)
    click.echo(f"THUNDER_HOME={home.root}; sample agent {agent_id!r}: {copied} file(s) copied")
    result = launch("pipeline_job", agent_id, ops=training_ops(trials, minutes, parallel=parallel))
    print_ingest_summary(home, agent_id)
    if result.success:
        print_training_summary(home, agent_id, DEMO_PROMPT)
    _finish(result, "demo")


@main.group()
def prod() -> None:
    """The production profile on this machine: Dagster on PostgreSQL, steps on Celery workers,
    MLflow on PostgreSQL. Reads the variables of deploy/profile.env (docs/DEPLOYMENT.md)."""


@contextlib.contextmanager
def _profile_running():
    from thunder_dagster.runtime.production import Profile, ProfileError, install_instance, running

    try:
        profile = Profile.from_environment()
        home = _home()
        install_instance(Path(settings.DAGSTER_HOME.value()))
        with running(profile, home.root, echo=click.echo) as processes:
            yield profile, processes
    except ProfileError as error:
        raise click.ClickException(str(error)) from error


@prod.command()
def up() -> None:
    """Start the MLflow server and the Celery workers and keep them running until Ctrl-C;
    run `dagster-daemon run` and `dagster-webserver` beside it."""
    import time

    with _profile_running() as (_, processes):
        click.echo("running; Ctrl-C stops the workers and the MLflow server")
        try:
            while all(process.poll() is None for process in processes):
                time.sleep(1)
        except KeyboardInterrupt:
            return
        raise click.ClickException("a worker or the MLflow server exited; see $THUNDER_HOME/logs")


@prod.command("run")
@click.option("--agent", "agent_id", default="sample", show_default=True)
@click.option("--trials", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--minutes", default=6.0, show_default=True, type=click.FloatRange(min=0.1))
def prod_run(agent_id: str, trials: int, minutes: float) -> None:
    """`thunder demo` on the production profile: start MLflow and the workers, run the main job
    with its steps on the workers (as many search steps as workers), then stop them."""
    agent_id = _agent(agent_id)
    with _profile_running() as (profile, _):
        _run_demo(agent_id, trials, minutes, parallel=profile.workers)
