"""THUNDER_HOME: the one root that holds all of thunder-dagster's state."""

import os
import re
from dataclasses import dataclass
from pathlib import Path

from thunder_dagster import settings

CATEGORIES = ("work_product", "communication", "reference")
AGENT_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")


class InvalidAgentIdError(ValueError):
    """An agent id that cannot name a folder or a Dagster partition safely."""


def validate_agent_id(agent_id: str) -> str:
    if not AGENT_ID_PATTERN.fullmatch(agent_id):
        raise InvalidAgentIdError(
            f"invalid agent id {agent_id!r}: use 1 to 64 letters, digits, '-' or '_' "
            "(it names the folder $THUNDER_HOME/agents/<agent_id>/ and a Dagster partition)"
        )
    return agent_id


def default_home() -> Path:
    return Path(settings.HOME.value()).absolute()


@dataclass(frozen=True)
class Home:
    """The layout of one THUNDER_HOME; every path any part of the project uses comes from here."""

    root: Path

    @classmethod
    def resolve(cls, root: str | os.PathLike | None = None) -> "Home":
        return cls(Path(root).absolute() if root else default_home())

    @property
    def agents_dir(self) -> Path:
        return self.root / "agents"

    def agent_dir(self, agent_id: str) -> Path:
        return self.agents_dir / validate_agent_id(agent_id)

    def category_dir(self, agent_id: str, category: str) -> Path:
        if category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}: use one of {', '.join(CATEGORIES)}")
        return self.agent_dir(agent_id) / category

    def processed_dir(self, agent_id: str) -> Path:
        return self.agent_dir(agent_id) / "processed"

    def ingest_report_path(self, agent_id: str) -> Path:
        return self.processed_dir(agent_id) / "ingest_report.json"

    def failure_log_path(self, agent_id: str) -> Path:
        return self.processed_dir(agent_id) / "failures.jsonl"

    @property
    def extraction_cache_dir(self) -> Path:
        return self.root / "cache" / "extracted"

    @property
    def upload_state_path(self) -> Path:
        return self.root / "cache" / "upload_state.json"

    @property
    def encoder_cache_dir(self) -> Path:
        return Path(settings.ENCODER_CACHE.value() or self.root / "cache" / "encoders")

    def retrieval_dir(self, agent_id: str) -> Path:
        """The agent's chunk vectors (vectors/<encoder version>/) and indexes (indexes/)."""
        return self.root / "retrieval" / validate_agent_id(agent_id)

    @property
    def dagster_home(self) -> Path:
        return self.root / "dagster"

    def models_dir(self, agent_id: str) -> Path:
        return self.root / "models" / validate_agent_id(agent_id)

    def deployments_dir(self, agent_id: str) -> Path:
        return self.root / "deployments" / validate_agent_id(agent_id)

    @property
    def bases_dir(self) -> Path:
        """The pretrained instruct base's checked graphs, one folder per file hash."""
        return Path(settings.BASE_CACHE.value() or self.root / "bases")

    @property
    def mlflow_dir(self) -> Path:
        return self.root / "mlflow"

    @property
    def mlflow_db_url(self) -> str:
        """The embedded MLflow backend store; production names a server instead."""
        return f"sqlite:///{self.mlflow_dir / 'mlflow.db'}"

    @property
    def optuna_db(self) -> Path:
        return self.root / "optuna.db"

    @property
    def queries_db(self) -> Path:
        return self.root / "queries.db"

    @property
    def queries_db_url(self) -> str:
        """The embedded query-log store; production passes a PostgreSQL URL instead."""
        return f"sqlite:///{self.queries_db}"

    def create_agent(self, agent_id: str) -> Path:
        for category in CATEGORIES:
            self.category_dir(agent_id, category).mkdir(parents=True, exist_ok=True)
        return self.agent_dir(agent_id)

    def list_agents(self) -> list[str]:
        if not self.agents_dir.is_dir():
            return []
        return sorted(
            entry.name
            for entry in os.scandir(self.agents_dir)
            if entry.is_dir(follow_symlinks=False) and AGENT_ID_PATTERN.fullmatch(entry.name)
        )
