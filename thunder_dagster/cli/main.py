"""The `thunder` command: a group whose commands load with their module when they are run, so
`thunder --help` and `thunder serve` never import Dagster or TensorFlow."""

import importlib
from importlib.metadata import PackageNotFoundError, version

import click

# Each command and the module of cli/ that defines it (as a function of the same name).
COMMANDS = {
    "ingest": "pipeline",
    "train": "pipeline",
    "task": "pipeline",
    "reward": "pipeline",
    "demo": "pipeline",
    "analyze": "pipeline",
    "generate": "answers",
    "classify": "answers",
    "search": "answers",
    "ask": "answers",
    "rollback": "deployments",
    "promote": "deployments",
    "undeploy": "deployments",
    "redeploy": "deployments",
    "compare": "deployments",
    "versions": "deployments",
    "serve": "server",
    "simulate": "server",
    "keys": "access",
    "audit": "access",
    "forget": "access",
    "agents": "agents",
    "upload": "agents",
    "status": "operations",
    "alerts": "operations",
    "prod": "production",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        module = COMMANDS.get(name)
        if module is None:
            return None
        return getattr(importlib.import_module(f"thunder_dagster.cli.{module}"), name)


def _version() -> str:
    try:
        return version("thunder-dagster")
    except PackageNotFoundError:
        return "unknown (not installed)"


@click.group(cls=LazyGroup)
@click.version_option(_version(), prog_name="thunder")
def main() -> None:
    """thunder-dagster: documents in, a trained and deployed model out."""
