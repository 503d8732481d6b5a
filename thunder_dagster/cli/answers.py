"""The answering commands: generate, classify, search. They answer through the same engine as
the model server (serving/answering.py), opened in this process on the workspace's
deployments: the same variant, grounding, best-of, teacher and query log."""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import click

from thunder_dagster.cli.workspace import AgentId, Workspace, cli_actor
from thunder_dagster.serving.errors import ServingError, WrongTask


@contextmanager
def engine(ws: Workspace, agent_id: str) -> Iterator:
    """The answering engine over the agent's deployment and index in the workspace, closed
    (its answers logged) when the command ends."""
    from thunder_dagster import settings
    from thunder_dagster.cli.server import external_teacher
    from thunder_dagster.serving.answering import Answerer
    from thunder_dagster.serving.state import ServerSettings, ServingState

    spool = settings.SPOOL_DIR.value()
    served = ServerSettings(
        deployments_root=ws.home.root / "deployments",
        query_db_url=ws.query_db_url,
        spool_dir=Path(spool) if spool else None,
        retrieval_root=ws.home.root / "retrieval",
        encoder_cache_dir=ws.home.encoder_cache_dir,
        teacher=external_teacher(),
        workers=1,
        reload_seconds=3600.0,  # one answer: the pointers are read once, at the start
        agents=frozenset({agent_id}),
    )
    state = ServingState.open(served)
    try:
        yield Answerer(state)
    except WrongTask as error:
        raise click.ClickException(
            f"the agent has the task {error.task}: `thunder {error.endpoint}` answers it"
        ) from error
    except ServingError as error:
        raise click.ClickException(str(error)) from error
    finally:
        state.close()


def _require_deployment(ws: Workspace, agent_id: str) -> None:
    from thunder_dagster.deployments.pointers import read_pointer

    deployments = ws.home.deployments_dir(agent_id)
    try:
        deployment = read_pointer(deployments)
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise click.ClickException(
            f"{deployments}: the champion pointer cannot be read ({error}); roll back "
            f"(thunder rollback {agent_id}) or train again"
        ) from error
    if deployment is None:
        raise click.ClickException(
            f"no champion deployment at {deployments}: train the agent first "
            "(thunder train AGENT_ID)"
        )


@click.command()
@click.argument("agent_id", type=AgentId)
@click.argument("text")
def classify(agent_id: str, text: str) -> None:
    """The label AGENT_ID's deployed classifier gives TEXT, with every label's probability."""
    ws = Workspace.resolve()
    _require_deployment(ws, agent_id)
    with engine(ws, agent_id) as answerer:
        found = answerer.classify(agent_id, text, cli_actor())
    click.echo(found.label)
    for name, probability in sorted(found.probabilities.items(), key=lambda item: -item[1]):
        click.echo(f"  {probability:.3f}  {name}", err=True)
    click.echo(f"[query {found.query_id}]", err=True)


@click.command()
@click.argument("agent_id", type=AgentId)
@click.argument("prompt")
@click.option("--tokens", default=200, show_default=True, type=click.IntRange(1, 1024))
@click.option("--temperature", default=0.8, show_default=True, type=click.FloatRange(0, 5))
@click.option("--seed", type=int, help="Seed of the sampling, for a repeatable answer")
@click.option("--grounded", is_flag=True, help="Ground the answer in the agent's passages")
@click.option("--best-of", type=click.IntRange(1, 8), help="Rank this many answers by reward")
def generate(
    agent_id: str,
    prompt: str,
    tokens: int,
    temperature: float,
    seed: int | None,
    grounded: bool,
    best_of: int | None,
) -> None:
    """Answer PROMPT as AGENT_ID's model server would (onnxruntime; TensorFlow is not loaded):
    the user's A/B variant, the teacher when unsure, logged for feedback."""
    from thunder_dagster.serving.answering import Question

    ws = Workspace.resolve()
    if ws.task_of(agent_id) not in instruct_tasks():
        _require_deployment(ws, agent_id)
    question = Question(
        prompt=prompt,
        user_id=cli_actor(),
        max_tokens=tokens,
        temperature=temperature,
        grounded=grounded,
        best_of=best_of,
        seed=seed,
    )
    with engine(ws, agent_id) as answerer:
        answer = answerer.generate(agent_id, question)
    click.echo(prompt + answer.text)
    confidence = f"{answer.confidence:.3f}" if answer.confidence is not None else "unknown"
    taught = ", from the teacher" if answer.fallback else ""
    click.echo(
        f"[{agent_id} {answer.model_version} ({answer.variant}{taught}), confidence "
        f"{confidence}, query {answer.query_id}]",
        err=True,
    )
    for source in answer.sources:
        click.echo(f"  source: {source.category}/{source.filename} {source.chunk_id}", err=True)


def instruct_tasks() -> tuple[str, ...]:
    """The tasks the instruct base answers (no deployment needed)."""
    from thunder_dagster.tasks.registry import KINDS

    return tuple(name for name, kind in KINDS.items() if kind.model == "instruct")


@click.command()
@click.argument("agent_id", type=AgentId)
@click.argument("question")
@click.option("--tokens", default=64, show_default=True, type=click.IntRange(1, 1024))
def ask(agent_id: str, question: str, tokens: int) -> None:
    """Answer QUESTION from AGENT_ID's documents with the instruct base, as a chat agent
    answers (any agent with a retrieval index; nothing is trained), with the sentences it
    rests on and their files. Logged for feedback like any answer."""
    from thunder_dagster.instruct.decoding import Sampling
    from thunder_dagster.instruct.tokens import Message
    from thunder_dagster.retrieval.index import pointed_version
    from thunder_dagster.serving.conversations import ChatQuestion, DocumentChat

    ws = Workspace.resolve()
    if pointed_version(ws.home.retrieval_dir(agent_id)) is None:
        raise click.ClickException(
            f"agent {agent_id} has no retrieval index yet: run `thunder ingest {agent_id}`"
        )
    asked = ChatQuestion((Message("user", question),), cli_actor(), Sampling(max_tokens=tokens))
    with engine(ws, agent_id) as answerer:
        answer = DocumentChat(answerer).answer(agent_id, asked)
    click.echo(f"Q: {question}")
    click.echo(f"A: {answer.text}")
    for support in answer.sources:
        chunk = support.chunk
        click.echo(f"   source: {chunk.category}/{chunk.filename} {chunk.chunk_id}")
        click.echo(f"           \u201c{support.sentence}\u201d")
    how = "from the teacher" if answer.fallback else "the instruct base"
    click.echo(
        f"[{agent_id} {answer.model_version} ({how}), confidence {answer.confidence:.3f}, "
        f"query {answer.query_id}]",
        err=True,
    )


@click.command()
@click.argument("agent_id", type=AgentId)
@click.argument("query")
@click.option("-k", "k", default=5, show_default=True, type=click.IntRange(1, 100))
def search(agent_id: str, query: str, k: int) -> None:
    """The chunks of AGENT_ID's documents nearest QUERY, from the index the server serves."""
    from thunder_dagster.retrieval.index import pointed_version

    ws = Workspace.resolve()
    if not query.strip():
        raise click.BadParameter("the query is blank", param_hint="QUERY")
    if pointed_version(ws.home.retrieval_dir(agent_id)) is None:
        raise click.ClickException(
            f"agent {agent_id} has no retrieval index yet: run `thunder ingest {agent_id}`"
        )
    with engine(ws, agent_id) as answerer:
        _, hits = answerer.search(agent_id, query, k)
    for rank, hit in enumerate(hits, start=1):
        chunk = hit.chunk
        click.echo(
            f"{rank}. {chunk.category}/{chunk.filename} [{chunk.start}:{chunk.end}] "
            f"score {hit.score:.4f} ({hit.found_by})"
        )
        click.echo("   " + " ".join(chunk.text.split())[:200])
