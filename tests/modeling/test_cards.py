"""The model card: one writer, one reader, and cards written before it was a type."""

import json

import pytest

from thunder_dagster.modeling.cards import (
    CardMetrics,
    ExportSummary,
    ModelCard,
    UnreadableCardError,
)

CARD = ModelCard(
    agent_id="acme",
    family="gru",
    params={"hidden_size": 32},
    context_length=16,
    vocab=("\ufffd", "a", "b"),
    metrics=CardMetrics(validation_loss=1.5, unigram_loss=2.5, epochs=3, train_seconds=4.0),
    files={"model.keras": "0" * 64},
)


def test_a_card_round_trips_and_grows_by_replacement(tmp_path):
    CARD.write(tmp_path)
    assert ModelCard.read(tmp_path) == CARD
    exported = CARD.with_files({"model.onnx": "1" * 64, "step.onnx": None}).replace(
        onnx=ExportSummary(1.4, 1e-6, {"onnxruntime_ms_batch_1": 1.0}, True, {"parity": True})
    )
    exported.write(tmp_path)
    read = ModelCard.read(tmp_path)
    assert read.files == {"model.keras": "0" * 64, "model.onnx": "1" * 64}
    assert read.onnx.checks == {"parity": True} and read.vocab == CARD.vocab
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, nothing left behind


def test_a_card_from_before_the_type_is_read_and_its_unknown_keys_ignored(tmp_path):
    older = {
        "agent_id": "acme",
        "family": "gru",
        "params": {},
        "context_length": "16",
        "vocab": ["a"],
        "metrics": {"validation_loss": 1.0, "unigram_loss": 2.0},
        "teacher_examples": True,
    }
    (tmp_path / "card.json").write_text(json.dumps(older))
    card = ModelCard.read(tmp_path)
    assert card.context_length == 16 and card.vocab == ("a",) and card.onnx is None
    # Before the three-way split a card had no test loss: it reports what selected it.
    assert card.reported_loss() == ("validation", 1.0)


def test_an_exported_card_from_before_the_test_split_reads_and_reports_its_validation(tmp_path):
    summary = {
        "validation_loss": 1.1,
        "parity_max_abs_difference": 1e-6,
        "latency_ms": {},
        "step_graph": True,
        "checks": {"parity": True},
    }
    older = {**CARD.replace(files={}).__dict__, "metrics": CARD.metrics.__dict__}
    (tmp_path / "card.json").write_text(json.dumps({**older, "onnx": summary}))
    card = ModelCard.read(tmp_path)
    assert card.onnx.test_loss is None and card.reported_loss() == ("validation", 1.5)
    tested = card.replace(metrics=card.metrics.__class__(1.5, 2.5, test_loss=1.7))
    assert tested.reported_loss() == ("test", 1.7)
    exported = tested.replace(onnx=card.onnx.__class__(1.69, 1e-6, {}, True, {}))
    assert exported.reported_loss() == ("test", 1.69)


def test_an_unreadable_card_names_its_file(tmp_path):
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(UnreadableCardError, match=r"card\.json: not a readable model card"):
        ModelCard.read(tmp_path)
    with pytest.raises(UnreadableCardError, match="missing"):
        ModelCard.read(tmp_path / "missing")
