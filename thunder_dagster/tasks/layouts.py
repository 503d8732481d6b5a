"""How instruction and chat pairs are laid out for a generator: shared by the ingest (pairs to
text), the fine-tune path (rated answers to text) and generation (the prompt laid out, the
answer cut where the next pair begins)."""

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
