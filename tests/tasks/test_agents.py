"""An agent's task in agent.json: generation without one, kept beside other settings, and a
file that cannot be used refused by its name with what to do."""

import json

import pytest

from thunder_dagster.tasks.agents import AgentSettingsError, read_task, settings_path, write_task
from thunder_dagster.tasks.layouts import cut_answer, format_pair, format_prompt


def test_an_agent_without_settings_generates_and_a_written_task_reads_back(tmp_path):
    agent = tmp_path / "acme"
    assert read_task(agent) == "generation"
    agent.mkdir()
    settings_path(agent).write_text(json.dumps({"owner": "sales"}))
    write_task(agent, "sentiment")
    assert read_task(agent) == "sentiment"
    assert json.loads(settings_path(agent).read_text()) == {"owner": "sales", "task": "sentiment"}
    with pytest.raises(AgentSettingsError, match="task 'summaries': use one of generation"):
        write_task(agent, "summaries")


@pytest.mark.parametrize(
    ("content", "says"),
    [("{not json", "not readable JSON"), ('{"task": "poetry"}', "task 'poetry' is not one of")],
)
def test_an_unusable_settings_file_is_refused_by_name_with_the_fix(tmp_path, content, says):
    agent = tmp_path / "acme"
    agent.mkdir()
    settings_path(agent).write_text(content)
    with pytest.raises(AgentSettingsError) as refused:
        read_task(agent)
    assert says in str(refused.value) and str(settings_path(agent)) in str(refused.value)
    assert "thunder task acme TASK" in str(refused.value)


def test_instruction_and_chat_lay_out_their_pairs_and_answers_end_where_the_next_pair_begins():
    assert format_pair("instruction", "Bake?", "Yes.") == (
        "### Instruction:\nBake?\n\n### Response:\nYes.\n\n"
    )
    assert format_pair("chat", "Hi", "Hello") == "User: Hi\nAssistant: Hello\n\n"
    # Pairs uploaded to an agent of another task are laid out as instructions.
    assert format_pair("generation", "a", "b") == format_pair("instruction", "a", "b")
    assert format_prompt("chat", "Hi") == "User: Hi\nAssistant: "
    assert format_prompt("generation", "Once upon") == "Once upon"
    assert cut_answer("chat", "Fine, thanks.\n\nUser: and you?") == "Fine, thanks."
    assert cut_answer("instruction", "Knead.\n\n### Instruction:\nNext") == "Knead."
    # A blank line inside an answer is not its end; other tasks' answers are never cut.
    assert cut_answer("chat", "One.\n\nTwo.") == "One.\n\nTwo."
    assert cut_answer("generation", "x\n\nUser: y") == "x\n\nUser: y"
