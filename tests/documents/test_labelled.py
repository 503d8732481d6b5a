"""Labelled uploads: CSV and JSONL examples, each bad row reported with its line and the rest
kept, and a file unusable whole refused with what to change."""

import pytest

from tests.factories import write
from thunder_dagster.documents.ingest import ingest_agent, report_entries
from thunder_dagster.documents.labelled import LabelledFileError, is_labelled, read_labelled


def test_a_csv_keeps_good_rows_and_reports_each_bad_one_by_line(tmp_path):
    path = write(
        tmp_path / "reviews.csv",
        '\ufeffId, Text ,LABEL\n1,"great bread, fresh",positive\n2,,negative\n\n'
        '3,"stale, hard",\n4,"multi\nline review",negative\n5,ok,neutral\n',
    )
    assert is_labelled(path)
    found = read_labelled(path)
    assert [(e.text, e.label, e.line) for e in found.examples] == [
        ("great bread, fresh", "positive", 2),
        ("multi\nline review", "negative", 6),
        ("ok", "neutral", 8),
    ]
    assert [(p.line, p.reason) for p in found.problems] == [
        (3, "no text: give the example's text"),
        (5, "no label: give the example's label"),
    ]
    assert found.labels() == {"negative": 1, "neutral": 1, "positive": 1}


def test_jsonl_lines_that_are_not_objects_or_lack_a_field_are_reported(tmp_path):
    path = write(
        tmp_path / "tickets.jsonl",
        '{"text": "printer jammed", "label": "hardware"}\n'
        "not json\n"
        '["a", "list"]\n'
        '{"text": "reset my password"}\n'
        '{"text": "wifi down", "label": 3}\n',
    )
    found = read_labelled(path)
    assert [(e.label, e.line) for e in found.examples] == [("hardware", 1), ("3", 5)]
    assert [p.line for p in found.problems] == [2, 3, 4]
    assert found.problems[0].reason.startswith("not JSON")


def test_a_poison_jsonl_line_is_reported_by_line_and_the_rest_are_read(tmp_path):
    """A 5,000-digit number and deep nesting raise past json's ValueError.msg (the first a
    ValueError without msg, the second a RecursionError); each is one bad line."""
    path = write(
        tmp_path / "tickets.jsonl",
        '{"text": "printer jammed", "label": "hardware"}\n'
        '{"text": "big", "label": ' + "9" * 5000 + "}\n" + "[" * 100_000 + "]" * 100_000 + "\n"
        '{"text": "wifi down", "label": "network"}\n',
    )
    found = read_labelled(path)
    assert [(e.label, e.line) for e in found.examples] == [("hardware", 1), ("network", 4)]
    assert [p.line for p in found.problems] == [2, 3]
    assert "digits" in found.problems[0].reason and "nested" in found.problems[1].reason


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("a.csv", "sentence,category\nhi,x\n", "needs a 'text' and a 'label' column"),
        ("b.csv", b"text,label\n\xff\xfe,x\n", "not UTF-8"),
        ("c.csv", "", "empty"),
        ("d.jsonl", "\n\n", "empty"),
    ],
)
def test_a_file_unusable_whole_is_refused_by_name_with_what_to_change(
    tmp_path, name, data, message
):
    with pytest.raises(LabelledFileError, match=message) as refused:
        read_labelled(write(tmp_path / name, data))
    assert str(refused.value).startswith(name)


def test_prompt_and_response_pairs_are_read_by_their_columns_and_a_half_pair_is_reported(
    tmp_path,
):
    path = write(
        tmp_path / "faq.csv", "Prompt, Response\nHow long to knead?,Ten minutes.\nWhat flour?,\n"
    )
    found = read_labelled(path)
    assert found.kind == "pairs"
    assert [(p.prompt, p.response, p.line) for p in found.examples] == [
        ("How long to knead?", "Ten minutes.", 2)
    ]
    assert [(p.line, p.reason) for p in found.problems] == [
        (3, "no response: give the pair's response")
    ]
    lines = write(tmp_path / "chat.jsonl", '{"prompt": "Hi", "response": "Hello"}\n{"text": 1}\n')
    found = read_labelled(lines)
    assert found.kind == "pairs" and [p.line for p in found.problems] == [2]


def test_a_chat_agents_pairs_become_a_document_laid_out_as_its_generator_learns_them(home):
    agent = home.create_agent("helper")
    write(
        agent / "reference" / "faq.jsonl",
        '{"prompt": "Hi", "response": "Hello"}\n{"prompt": "Open?", "response": "Till 6."}\n'
        '{"prompt": "Bye"}\n',
    )
    result = ingest_agent(home, "helper", task="chat")
    [document] = result.ok
    assert document.text == "User: Hi\nAssistant: Hello\n\nUser: Open?\nAssistant: Till 6.\n\n"
    [entry] = report_entries(result)
    assert entry["status"] == "ok" and entry["pairs"] == 2 and entry["chunks"] == 1
    assert entry["bad_rows"] == [{"line": 3, "reason": "no response: give the pair's response"}]


def test_users_labels_join_the_uploads_traced_to_their_query_and_never_override_a_file():
    from datetime import UTC, datetime, timedelta

    from thunder_dagster.documents.labelled import LabelledExample, collect_examples
    from thunder_dagster.feedback.records import Correction

    start = datetime(2026, 3, 3, tzinfo=UTC)

    def given(n: int, text: str, label: str, user: str) -> Correction:
        return Correction(f"q{n}", text, "baking", label, user, start + timedelta(minutes=n))

    uploads = [("reference/a.csv", [LabelledExample("bake the bread", "baking", 2)])]
    before = collect_examples("topics", uploads)
    corrections = [
        given(1, "a ship at sea", "music", "ann"),
        given(2, "a ship at sea", "sailing", "bob"),
        given(3, "a ship at sea", "sailing", "cy"),
        given(4, "a ship at sea", "music", "ann"),  # ann again: hers counts once
        given(5, "sing the chorus", "baking", "dee"),
        given(6, "sing the chorus", "music", "dee"),  # dee changed her mind
        given(7, "bake the bread", "sailing", "eve"),  # the upload says baking
    ]
    after = collect_examples("topics", uploads, corrections)
    rows = dict(zip(after.texts, zip(after.labels, after.sources, strict=True), strict=True))
    assert rows == {
        "bake the bread": ("baking", "reference/a.csv:2"),
        "a ship at sea": ("sailing", "query:q3"),
        "sing the chorus": ("music", "query:q6"),
    }
    assert after.conflicts == (
        "query:q7 labels a text 'sailing', reference/a.csv:2 gave it 'baking': 'baking' kept",
    )
    assert after.version != before.version
    assert collect_examples("topics", uploads, corrections).version == after.version
