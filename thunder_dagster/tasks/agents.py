"""An agent's settings file: its task (tasks/registry.py says what each task means).

The task lives in $THUNDER_HOME/agents/<agent>/agent.json ({"task": "classification"}),
beside the category folders and never read as an upload. No file means generation. `thunder
task AGENT TASK` and prompt_training_job's `model_type` write it.
"""

import json
from pathlib import Path

from thunder_dagster.files import write_atomically
from thunder_dagster.tasks.registry import DEFAULT_TASK, TASKS

SETTINGS_NAME = "agent.json"


class AgentSettingsError(ValueError):
    """An agent.json that cannot be used: the message names the file and what to change."""


def settings_path(agent_dir: Path) -> Path:
    return Path(agent_dir) / SETTINGS_NAME


def check_task(task: str) -> str:
    if task not in TASKS:
        raise AgentSettingsError(f"task {task!r}: use one of {', '.join(TASKS)}")
    return task


def read_task(agent_dir: Path) -> str:
    """The agent's task; generation when it has no agent.json."""
    path = settings_path(agent_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return DEFAULT_TASK
    except (OSError, ValueError) as error:
        raise AgentSettingsError(
            f'{path}: not readable JSON ({error}); write {{"task": "{DEFAULT_TASK}"}} or '
            f"set it with `thunder task {Path(agent_dir).name} TASK`"
        ) from None
    task = data.get("task", DEFAULT_TASK) if isinstance(data, dict) else None
    if not isinstance(task, str) or task not in TASKS:
        raise AgentSettingsError(
            f"{path}: task {task!r} is not one of {', '.join(TASKS)}; set it with "
            f"`thunder task {Path(agent_dir).name} TASK`"
        )
    return task


def write_task(agent_dir: Path, task: str) -> Path:
    """Record the agent's task, keeping any other settings the file holds."""
    path = settings_path(agent_dir)
    check_task(task)
    try:
        current = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        current = {}
    settings = {**(current if isinstance(current, dict) else {}), "task": task}
    write_atomically(path, json.dumps(settings, indent=2, sort_keys=True).encode("utf-8"))
    return path


def read_grounding(agent_dir: Path):
    """A chat or instruction agent's GroundingPolicy: agent.json's "grounding" object over
    the defaults ({"min_similarity": 0.35, "uncovered": "refuse", "sentences": 2,
    "checked": true})."""
    import dataclasses

    from thunder_dagster.instruct.grounding import GroundingPolicy

    path = settings_path(agent_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return GroundingPolicy()
    except (OSError, ValueError) as error:
        raise AgentSettingsError(f"{path}: not readable JSON ({error})") from None
    given = data.get("grounding", {}) if isinstance(data, dict) else None
    fields = {field.name: field.type for field in dataclasses.fields(GroundingPolicy)}
    if not isinstance(given, dict) or not set(given) <= set(fields):
        raise AgentSettingsError(
            f"{path}: grounding must be an object with any of {', '.join(fields)}"
        )
    policy = GroundingPolicy(**given)
    if (
        policy.uncovered not in ("refuse", "answer")
        or not isinstance(policy.sentences, int)
        or not 1 <= policy.sentences <= 8
        or not isinstance(policy.min_similarity, int | float)
        or not isinstance(policy.checked, bool)
    ):
        raise AgentSettingsError(
            f"{path}: grounding {given}: uncovered is refuse or answer, sentences 1 to 8, "
            "min_similarity a number (cosine, -1 to 1), checked true or false"
        )
    return policy


def read_release_policy(agent_dir: Path):
    """What happens to the agent's retrained model when it scores worse than its champion:
    agent.json's "release" object over the defaults ({"when_worse": "challenger",
    "tolerance": 0.02}); "refuse" keeps a worse model out altogether."""
    from thunder_dagster.deployments.gate import WHEN_WORSE, ReleasePolicy

    path = settings_path(agent_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ReleasePolicy()
    except (OSError, ValueError) as error:
        raise AgentSettingsError(f"{path}: not readable JSON ({error})") from None
    given = data.get("release", {}) if isinstance(data, dict) else None
    if not isinstance(given, dict) or not set(given) <= {"when_worse", "tolerance"}:
        raise AgentSettingsError(f"{path}: release must be an object with when_worse, tolerance")
    policy = ReleasePolicy(**given)
    tolerance = policy.tolerance
    if policy.when_worse not in WHEN_WORSE or not (
        isinstance(tolerance, int | float) and not isinstance(tolerance, bool) and tolerance >= 0
    ):
        raise AgentSettingsError(
            f"{path}: release {given}: when_worse is {' or '.join(WHEN_WORSE)}, tolerance a "
            "number of nats per character, 0 or more"
        )
    return policy


def read_retention(agent_dir: Path) -> int:
    """How many days the query log keeps the agent's answers: agent.json's "retention_days"
    (a whole number, 1 or more), else feedback/retention.py's default (90)."""
    from thunder_dagster.feedback.retention import DEFAULT_RETENTION_DAYS

    path = settings_path(agent_dir)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return DEFAULT_RETENTION_DAYS
    except (OSError, ValueError) as error:
        raise AgentSettingsError(f"{path}: not readable JSON ({error})") from None
    days = data.get("retention_days", DEFAULT_RETENTION_DAYS) if isinstance(data, dict) else None
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise AgentSettingsError(
            f"{path}: retention_days {days!r}: give a whole number of days, 1 or more"
        )
    return days


class AgentExistsError(ValueError):
    """An agent to create whose folder exists already."""


def create_agent(home, agent_id: str, task: str, display_name: str | None, by: str) -> Path:
    """A new agent's folders and its agent.json (task, display name, who made it and when);
    AgentExistsError when the agent exists. What `thunder agents create` and `POST
    /v1/admin/agents` both do."""
    from datetime import UTC, datetime

    check_task(task)
    if home.agent_dir(agent_id).exists():
        raise AgentExistsError(f"agent {agent_id!r} exists: choose another id")
    home.create_agent(agent_id)
    settings = {
        "task": task,
        "display_name": display_name,
        "created_by": by,
        "created_at": datetime.now(UTC).isoformat(),
    }
    path = settings_path(home.agent_dir(agent_id))
    write_atomically(path, json.dumps(settings, indent=2).encode())
    return path
