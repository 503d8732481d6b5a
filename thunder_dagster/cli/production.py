"""The production profile on this machine: Dagster on PostgreSQL, steps on Celery workers,
MLflow on PostgreSQL (deploy/profile.env, docs/DEPLOYMENT.md)."""

import contextlib
import time

import click

from thunder_dagster.cli.pipeline import run_demo
from thunder_dagster.cli.workspace import AgentId, Workspace


@click.group()
def prod() -> None:
    """The production profile on this machine: Dagster on PostgreSQL, steps on Celery workers,
    MLflow on PostgreSQL. Reads the variables of deploy/profile.env (docs/DEPLOYMENT.md)."""


@contextlib.contextmanager
def _profile_running():
    from thunder_dagster.runtime.production import Profile, ProfileError, install_instance, running

    try:
        profile = Profile.from_environment()
        ws = Workspace.resolve()
        install_instance(ws.dagster_home)
        with running(profile, ws.home.root, ws.dagster_home, echo=click.echo) as processes:
            yield profile, processes
    except ProfileError as error:
        raise click.ClickException(str(error)) from error


@prod.command()
def up() -> None:
    """Start the MLflow server and the Celery workers and keep them running until Ctrl-C;
    run `dagster-daemon run` and `dagster-webserver` beside it."""
    with _profile_running() as (_, processes):
        click.echo("running; Ctrl-C stops the workers and the MLflow server")
        try:
            while all(process.poll() is None for process in processes):
                time.sleep(1)
        except KeyboardInterrupt:
            return
        raise click.ClickException("a worker or the MLflow server exited; see $THUNDER_HOME/logs")


@prod.command("run")
@click.option("--agent", "agent_id", default="sample", show_default=True, type=AgentId)
@click.option("--trials", default=8, show_default=True, type=click.IntRange(min=1))
@click.option("--minutes", default=6.0, show_default=True, type=click.FloatRange(min=0.1))
@click.option(
    "--epochs",
    type=click.IntRange(min=1),
    help="Epochs of each search trial and most epochs of the final training: a budget in "
    "work, which --minutes still caps",
)
def prod_run(agent_id: str, trials: int, minutes: float, epochs: int | None) -> None:
    """`thunder demo` on the production profile: start MLflow and the workers, run the main job
    with its steps on the workers (as many search steps as workers), then stop them."""
    with _profile_running() as (profile, _):
        run_demo(agent_id, trials, minutes, parallel=profile.workers, epochs=epochs)
