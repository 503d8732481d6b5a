"""The MLflow model registry behind deployments' ModelRegistry: one registered model per
agent, `thunder-<agent>`, with a version per release and the champion, challenger and teacher
aliases. Calls go through the Tracker, so a registry that is down never stops a release."""

from dataclasses import dataclass
from pathlib import Path

from thunder_dagster.tracking.experiments import Tracker

ARTIFACT_PATH = "model"


def registered_model_name(agent_id: str) -> str:
    return f"thunder-{agent_id}"


@dataclass
class MlflowRegistry:
    tracker: Tracker

    def register(
        self, agent_id: str, version: str, model_dir: Path, run_id: str | None, tags: dict
    ) -> str | None:
        """A registry version holding the release as an MLflow Model (tracking/pyfunc.py)."""
        if run_id is None:
            return None
        import tempfile

        from thunder_dagster.tracking.pyfunc import save_release

        with tempfile.TemporaryDirectory() as scratch:
            saved = save_release(model_dir, Path(scratch) / ARTIFACT_PATH, version)
            self.tracker.log_artifacts(run_id, saved, ARTIFACT_PATH)
        return self.tracker.register(
            registered_model_name(agent_id), run_id, ARTIFACT_PATH, {"semver": version, **tags}
        )

    def set_alias(self, agent_id: str, alias: str, registry_version: str | None) -> None:
        self.tracker.set_alias(registered_model_name(agent_id), alias, registry_version)

    def remove_alias(self, agent_id: str, alias: str) -> None:
        self.tracker.delete_alias(registered_model_name(agent_id), alias)
