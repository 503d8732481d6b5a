"""What a deployment needs of a model registry: a new version, and aliases that name the
versions serving. MLflow's registry implements it (tracking/registry.py); `NoRegistry` is for
a home without one, where the pointer files alone say what serves."""

from pathlib import Path
from typing import Protocol


class ModelRegistry(Protocol):
    def register(
        self, agent_id: str, version: str, model_dir: Path, run_id: str | None, tags: dict
    ) -> str | None:
        """A new registry version of the agent's model from the files in `model_dir`; its
        number, or None where the registry is off or the model has no run to attach it to."""

    def set_alias(self, agent_id: str, alias: str, registry_version: str | None) -> None:
        """Point `alias` (champion, challenger, teacher) at the version; None leaves it."""

    def remove_alias(self, agent_id: str, alias: str) -> None:
        """The alias names no version any more."""


class NoRegistry:
    def register(self, agent_id, version, model_dir, run_id, tags) -> str | None:
        return None

    def set_alias(self, agent_id, alias, registry_version) -> None:
        pass

    def remove_alias(self, agent_id, alias) -> None:
        pass
