"""What an agent is trained to do: its task type, seed 001's "model type".

- generation: continue text (the character-level generator);
- classification and sentiment: a label for a text, learnt from labelled uploads;
- instruction and chat: answers to prompts, learnt from prompt and response pairs.

The task lives in $THUNDER_HOME/agents/<agent>/agent.json ({"task": "classification"}),
beside the category folders and never read as an upload. No file means generation. `thunder
task AGENT TASK` and prompt_training_job's `model_type` write it.
"""

import json
from pathlib import Path

from thunder_dagster.files import write_atomically

TASKS = ("generation", "classification", "sentiment", "instruction", "chat")
LABEL_TASKS = ("classification", "sentiment")  # a classifier on the sentence encoder
PAIR_TASKS = ("instruction", "chat")  # a generator trained on formatted prompt and response
DEFAULT_TASK = "generation"
SETTINGS_NAME = "agent.json"


# How a prompt and its response are laid out for a generator: before the prompt, between the
# two, and after the response. A served answer to a prompt is generated after the first two
# and ends where the layout's next pair would begin.
FORMATS = {
    "instruction": ("### Instruction:\n", "\n\n### Response:\n", "\n\n"),
    "chat": ("User: ", "\nAssistant: ", "\n\n"),
}
# Prompt and response pairs uploaded to an agent of another task are laid out as instructions.
PAIR_DEFAULT = "instruction"


def format_pair(task: str, prompt: str, response: str) -> str:
    """One pair as the agent's generator learns it."""
    before, between, after = FORMATS.get(task, FORMATS[PAIR_DEFAULT])
    return f"{before}{prompt}{between}{response}{after}"


def format_prompt(task: str, prompt: str) -> str:
    """What the generator continues to answer `prompt`: the pair's layout up to its response,
    for instruction and chat agents; the prompt itself for the others."""
    if task not in FORMATS:
        return prompt
    before, between, _ = FORMATS[task]
    return f"{before}{prompt}{between}"


def answer_end(task: str) -> str | None:
    """Where an instruction or chat agent's answer ends: the layout's next pair; None for the
    other tasks, whose answers run to their length."""
    if task not in FORMATS:
        return None
    before, _, after = FORMATS[task]
    return after + before.rstrip()


def cut_answer(task: str, answer: str) -> str:
    """The answer up to where the layout's next pair begins (all of it for other tasks)."""
    end = answer_end(task)
    return answer[: answer.index(end)] if end is not None and end in answer else answer


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
