"""Drift on a real champion: a character model trained on the bakery sample agent's documents
finds tinyshakespeare's lines far from its text and the agent's own sentences near it, by its
per-character loss and by the sentence encoder's distance to the nearest chunk."""

import re
from datetime import UTC, datetime, timedelta

import dagster as dg
import numpy as np
import onnxruntime
import pytest

from tests.factories import PHRASES, REPO_ROOT, deploy_tiny, log, resources, sentence_encoder
from thunder_dagster.assets import feedback
from thunder_dagster.documents.datasets import write_training_dataset
from thunder_dagster.documents.extraction import ExtractionLimits, extract
from thunder_dagster.modeling.architectures import build_language_model, compile_model
from thunder_dagster.modeling.backend import keras
from thunder_dagster.modeling.graphs import export_onnx
from thunder_dagster.modeling.text import Vocabulary, random_windows
from thunder_dagster.monitoring import drift
from thunder_dagster.monitoring.rules import Thresholds
from thunder_dagster.retrieval.vectors import chunks_of

CONTEXT = 32
BOUND = Thresholds().drift_p95


def sentences(text: str, count: int, seed: int) -> list[str]:
    found = [s.strip() for s in re.split(r"(?<=[.!?])\s+|\n+", text) if len(s.strip()) >= 30]
    rng = np.random.default_rng(seed)
    return [found[i] for i in rng.choice(len(found), size=min(count, len(found)), replace=False)]


@pytest.fixture(scope="module")
def bakery():
    """The sample agent's text (as ingest extracts it), a GRU trained on its first 85%, and
    the ONNX session the server would run."""
    files = sorted((REPO_ROOT / "samples" / "agent").glob("*/*.*"))
    texts = [extract(path, ExtractionLimits()).text for path in files]
    text = "\n\n".join(t for t in texts if t)
    cut = int(len(text) * 0.85)
    vocabulary = Vocabulary.from_text(text[:cut])
    ids = vocabulary.encode(text[:cut])
    keras.utils.set_random_seed(0)
    hp = {
        "family": "gru",
        "context_length": CONTEXT,
        "learning_rate": 3e-3,
        "hidden_size": 96,
        "layers": 1,
        "dropout": 0.0,
        "activation": "gelu",
    }
    model = compile_model(build_language_model(hp, len(vocabulary)), 3e-3)
    x, y = random_windows(ids, CONTEXT, 6000, np.random.default_rng(0))
    model.fit(x, y, batch_size=64, epochs=4, verbose=0)
    session = onnxruntime.InferenceSession(
        export_onnx(model, "gru").SerializeToString(), providers=["CPUExecutionProvider"]
    )
    return text, text[:cut], text[cut:], vocabulary, session


def scores(bakery, queries: list[str], encoder=None):
    text, _, test, vocabulary, session = bakery
    losses = drift.text_losses(session, vocabulary, CONTEXT, queries)
    pieces = drift.reference_pieces(test, [len(q) for q in queries])
    reference = drift.text_losses(session, vocabulary, CONTEXT, pieces)
    if encoder is None:
        return drift.drift_report(losses, reference)
    chunks = chunks_of(text, "bakery.txt")
    vectors = encoder.encode([chunk.text for chunk in chunks])
    return drift.drift_report(
        losses,
        reference,
        drift.nearest_distances(encoder.encode(queries), vectors),
        drift.piece_distances(pieces, encoder.encode(pieces), chunks, vectors),
    )


@pytest.fixture(scope="module")
def shakespeare():
    path = REPO_ROOT.parent / "shared" / "corpus" / "text" / "tinyshakespeare.txt"
    return sentences(path.read_text(), 40, seed=1)


def test_the_loss_of_a_text_is_its_mean_per_character_cross_entropy(bakery):
    _, train, _, vocabulary, session = bakery
    short, long = train[:20], train[:200]  # inside one window, and across several
    (loss_short, loss_long, nothing) = drift.text_losses(
        session, vocabulary, CONTEXT, [short, long, "a"]
    )
    ids = vocabulary.encode(long)
    x = np.zeros((1, CONTEXT), np.int32)
    x[0, :19] = ids[:19]
    logits = session.run(["logits"], {"tokens": x})[0][0, :19].astype(np.float64)
    log_probabilities = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -log_probabilities[np.arange(19), ids[1:20]].mean()
    assert loss_short == pytest.approx(expected, rel=1e-5)
    assert np.isfinite(loss_long) and np.isnan(nothing)


def test_by_loss_alone_shakespeare_drifts_and_what_the_model_learned_does_not(bakery, shakespeare):
    """By the loss alone the tiny model's own training sentences stay under the bound and
    Shakespeare's lines go over it. Its held-out sentences are surprising to it too (a p95 over
    the bound: 6 KB of text teaches little), but their loss distribution is close to the test
    split's, where Shakespeare's is far from it."""
    _, train, test, *_ = bakery
    far = scores(bakery, shakespeare)
    near = scores(bakery, sentences(train, 40, seed=2))
    assert near.p95 < BOUND < far.p95, (near.p95, far.p95)
    held = scores(bakery, sentences(test, 40, seed=2))
    assert far.ks_p_value < 1e-6 and held.ks_statistic < 0.3 < far.ks_statistic


def test_with_the_distance_to_the_nearest_chunk_only_shakespeare_drifts(
    bakery, shakespeare, encoder_cache
):
    encoder = sentence_encoder(str(encoder_cache))
    _, train, test, *_ = bakery
    far = scores(bakery, shakespeare, encoder)
    for own in (sentences(train, 40, seed=3), sentences(test, 40, seed=3)):
        near = scores(bakery, own, encoder)
        assert near.distance_p95 < far.distance_p95
        assert near.p95 < BOUND < far.p95, (near.p95, far.p95)


def test_query_drift_scores_a_day_keeps_it_for_the_rule_and_plots_the_days(home, store):
    """The asset on the path a day takes: the day's logged queries, the deployed champion, the
    agent's dataset; the score lands in the store, where the drift rule reads it."""
    deploy_tiny(home, "acme")
    text = "".join(PHRASES[n % 3] for n in range(300))
    rows = [
        (
            "d1",
            "reference",
            "a.txt",
            number,
            f"d1-{number}",
            start,
            min(start + 512, len(text)),
            text[start : start + 512],
        )
        for number, start in enumerate(range(0, len(text), 462))
    ]
    write_training_dataset("acme", rows, home.processed_dir("acme"))
    day = datetime(2026, 3, 3, tzinfo=UTC)
    log(store, 8, day + timedelta(hours=1))
    log(store, 1, day - timedelta(hours=2))  # the day before: not this day's
    with dg.instance_for_test() as instance:
        instance.add_dynamic_partitions("agents", ["acme"])
        result = dg.materialize(
            [feedback.query_drift],
            partition_key=dg.MultiPartitionKey({"agent": "acme", "day": "2026-03-03"}),
            instance=instance,
            resources=resources(home),
        )
    metadata = result.asset_materializations_for_node("query_drift")[0].metadata
    assert metadata["scored"].value is True and metadata["queries"].value == 8
    assert np.isfinite(metadata["drift_p95"].value)
    assert metadata["history"].value.startswith("![drift over the days](data:image/png;base64,")
    (kept,) = store.drift_history("acme")
    assert (kept.day.isoformat(), kept.queries, kept.model_version) == ("2026-03-03", 8, "1.0.0")
    assert store.latest_drift() == {"acme": ("2026-03-03", pytest.approx(kept.p95))}
