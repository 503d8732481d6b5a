import json
from datetime import UTC, datetime

from thunder_dagster.documents.datasets import (
    check_training_dataset,
    latest_dataset,
    read_training_dataset,
    write_training_dataset,
)

NOW = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)
TRICKY = [
    'commas, "quotes" and\nnewlines\r\ninside',
    "NA",
    "",
    "null",
    "ünïcödé — ✓",
    "  leading and trailing spaces  ",
    "1e5",
]


def rows(texts, document_id="d" * 16):
    return [
        (document_id, "reference", "f.txt", index, f"{document_id}-{index:05d}", 0, len(text), text)
        for index, text in enumerate(texts)
    ]


def test_the_csv_round_trips_through_pandas(tmp_path):
    dataset = write_training_dataset("acme", rows(TRICKY), tmp_path, now=NOW)
    assert dataset.path.endswith("training_data_20261123T083000_000000Z.csv")
    frame = read_training_dataset(dataset.path)
    assert frame["text"].tolist() == TRICKY
    assert frame.columns.tolist() == [
        "document_id",
        "category",
        "filename",
        "chunk_index",
        "chunk_id",
        "start",
        "end",
        "text",
    ]
    assert dataset.rows == len(TRICKY) and dataset.documents == 1
    with open(dataset.path, "rb") as handle:
        assert handle.readline().endswith(b"\r\n")


def test_the_same_content_gives_the_same_version_and_no_new_file(tmp_path):
    first = write_training_dataset("acme", rows(["a", "b"]), tmp_path, now=NOW)
    later = datetime(2026, 11, 24, tzinfo=UTC)
    again = write_training_dataset("acme", rows(["a", "b"]), tmp_path, now=later)
    assert again == first
    changed = write_training_dataset("acme", rows(["a", "c"]), tmp_path, now=later)
    assert changed.version != first.version
    assert sorted(path.name for path in tmp_path.glob("*.csv")) == [
        "training_data_20261123T083000_000000Z.csv",
        "training_data_20261124T000000_000000Z.csv",
    ]


def test_checks_pass_on_a_good_dataset(tmp_path):
    dataset = write_training_dataset("acme", rows(["x" * 512, "y"]), tmp_path, now=NOW)
    assert all(check.passed for check in check_training_dataset(dataset.path))


def test_checks_catch_empty_oversized_and_duplicated_chunks(tmp_path):
    empty = write_training_dataset("acme", [], tmp_path / "empty", now=NOW)
    assert {c.name: c.passed for c in check_training_dataset(empty.path)}["not_empty"] is False
    bad_rows = rows(["x" * 513, "ok"]) + rows(["dup"])
    bad = write_training_dataset("acme", bad_rows, tmp_path / "bad", now=NOW)
    results = {check.name: check for check in check_training_dataset(bad.path)}
    assert results["not_empty"].passed
    assert not results["chunks_within_size"].passed
    assert results["chunks_within_size"].details["longest"] == 513
    assert not results["unique_chunk_ids"].passed
    assert results["unique_chunk_ids"].details["duplicated"] == ["dddddddddddddddd-00000"]


def test_hand_quoted_lines_parse_back_with_the_csv_module(tmp_path):
    import csv

    awkward = [
        ("d" * 16, "reference", 'notes, "final".txt', 0, "c-0", 0, 5, 'say "hi"\r\nthen, go'),
        ("d" * 16, "reference", "plain.txt", 1, "c-1", 5, 9, ""),
    ]
    dataset = write_training_dataset("acme", awkward, tmp_path, now=NOW)
    with open(dataset.path, encoding="utf-8", newline="") as handle:
        parsed = list(csv.reader(handle))
    assert parsed[1:] == [[str(value) for value in row] for row in awkward]


def test_the_manifest_counts_each_categorys_documents_also_for_an_older_manifest(tmp_path):
    both = rows(["a"], "a" * 16) + rows(["b", "c"], "b" * 16)
    both[-1] = ("b" * 16, "communication", *both[-1][2:])
    dataset = write_training_dataset("acme", both, tmp_path, now=NOW)
    assert dataset.categories == {"communication": 1, "reference": 2}
    assert latest_dataset(tmp_path) == dataset
    manifest = tmp_path / "dataset.json"
    older = {k: v for k, v in json.loads(manifest.read_text()).items() if k != "categories"}
    manifest.write_text(json.dumps(older))
    assert latest_dataset(tmp_path).categories == {}
    again = write_training_dataset("acme", both, tmp_path, now=NOW)
    assert again.version == dataset.version and again.categories == dataset.categories
    assert latest_dataset(tmp_path).categories == dataset.categories


def test_an_empty_dataset_fails_not_empty_unless_the_agent_learns_from_labelled_examples(tmp_path):
    empty = write_training_dataset("topics", [], tmp_path)
    generator = {c.name: c for c in check_training_dataset(empty.path)}
    classifier = {c.name: c for c in check_training_dataset(empty.path, text_needed=False)}
    assert (
        not generator["not_empty"].passed
        and "no upload yielded text" in generator["not_empty"].description
    )
    assert (
        classifier["not_empty"].passed
        and "labelled examples" in classifier["not_empty"].description
    )
