"""The classifier core on real sentence vectors: a split that keeps every label in every part,
a searched head that beats the majority class on held-out texts, and its export as one ONNX
graph (encoder, head, softmax) that agrees with Keras."""

import numpy as np
import pytest

from tests.factories import TOPICS, sentence_encoder
from tests.factories import topic_examples as labelled
from thunder_dagster.modeling.classifiers import (
    ClassifierBudget,
    TokenizedTexts,
    inputs,
    probabilities,
    train_classifier,
)
from thunder_dagster.modeling.evaluation import LabelledDataError, split_labelled
from thunder_dagster.modeling.heads import (
    PARITY_TOLERANCE,
    classifier_graph,
    export_classifier,
    head_graph,
    run_classifier,
)


@pytest.fixture(scope="module")
def encoder(tmp_path_factory):
    return sentence_encoder(str(tmp_path_factory.mktemp("encoders")))


def test_the_split_keeps_every_label_in_each_part_and_refuses_what_cannot_be_learned(encoder):
    texts, labels = labelled()
    vectors = np.zeros((len(texts), 4), np.float32)
    split = split_labelled(texts, labels, vectors)
    assert split.labels == ("baking", "music", "sailing")
    for part in (split.train_y, split.validation_y, split.test_y):
        assert set(part.tolist()) == {0, 1, 2}
    assert len(split.train_y) + len(split.validation_y) + len(split.test_y) == len(texts)
    # The same texts always land in the same part, whatever else is there.
    again = split_labelled(texts[::-1], labels[::-1], vectors)
    assert sorted(again.test_y.tolist()) == sorted(split.test_y.tolist())
    with pytest.raises(LabelledDataError, match="at least two labels"):
        split_labelled(["a", "b"], ["x", "x"], vectors[:2])
    with pytest.raises(LabelledDataError, match="label 'y' has 1 example"):
        split_labelled(["a", "b", "c"], ["x", "x", "y"], vectors[:3])


def test_a_searched_head_beats_the_majority_and_exports_as_one_graph(encoder, tmp_path):
    import onnxruntime

    texts, labels = labelled()
    split = split_labelled(texts, labels, encoder.encode(texts))
    model, result = train_classifier(split, trials=2, budget=ClassifierBudget(epochs=40), seed=0)
    metrics = result.metrics
    assert metrics.beats_majority and metrics.accuracy >= 0.9 and metrics.macro_f1 >= 0.9
    assert metrics.majority_accuracy == pytest.approx(1 / 3, abs=0.05)
    assert np.asarray(metrics.confusion).sum() == len(split.test_y)
    assert len(result.trials) == 2 and result.trials[0]["params"]["hidden_size"] == 128
    assert result.lexical is None
    graph = classifier_graph(encoder.graph_path, head_graph(model, result.params["activation"]))
    path = tmp_path / "classifier.onnx"
    path.write_bytes(graph.SerializeToString())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probe = texts[:6]
    exported = run_classifier(session, encoder.tokens(probe))
    expected = probabilities(model, encoder.encode(probe))
    assert np.abs(exported - expected).max() < PARITY_TOLERANCE
    np.testing.assert_allclose(exported.sum(-1), 1.0, atol=1e-5)


def test_the_words_of_a_label_are_learnt_beside_the_vectors_and_computed_in_the_graph(
    encoder, tmp_path
):
    """Labels told by a name in otherwise the same phrases: the linear model over the TF-IDF
    features learns the names, and the exported graph computes those features from the
    token ids itself."""
    import onnxruntime

    from thunder_dagster.modeling.backend import keras

    phrases = [phrase for phrases in TOPICS.values() for phrase in phrases]
    texts, labels = [], []
    for n, phrase in enumerate(phrases * 3):
        for name in ("Marlowe", "Beaumont"):
            texts.append(f"{name} says: {phrase}, on day {n}")
            labels.append(name)
    split = split_labelled(texts, labels, encoder.encode(texts))
    tokens = TokenizedTexts(encoder.tokens(texts), encoder.vocab_size, encoder.special_ids())
    budget = ClassifierBudget(epochs=30)
    model, result = train_classifier(split, trials=1, budget=budget, seed=0, tokens=tokens)
    assert result.lexical is not None and result.lexical_epochs
    words_weight = result.mix[0]
    assert words_weight > 0  # the words are what tells these labels apart
    assert result.metrics.accuracy == 1.0 and result.metrics.macro_f1 == 1.0
    # The linear model alone tells the names apart on the test texts: the words were learnt.
    table = model.get_layer("lexical").table.numpy()
    ids, weights = result.lexical.parts[2]
    words_only = np.einsum("bl,blc->bc", weights, table[ids]).argmax(-1)
    assert (words_only == split.test_y).all()

    path = tmp_path / "classifier.onnx"
    test_texts = [texts[row] for row in split.rows[2]]
    export = export_classifier(
        model, result.params["activation"], encoder, split, test_texts, path, result.lexical
    )
    assert export.passed and export.max_abs_difference < PARITY_TOLERANCE
    assert export.metrics.accuracy == 1.0
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    exported = run_classifier(session, encoder.tokens(test_texts))
    expected = probabilities(model, inputs(split, result.lexical, 2))
    assert np.abs(exported - expected).max() < PARITY_TOLERANCE
    # The saved model is the same model: its linear part and idf come back with it.
    model.save(tmp_path / "model.keras")
    again = keras.models.load_model(tmp_path / "model.keras")
    reloaded = probabilities(again, inputs(split, result.lexical, 2))
    np.testing.assert_allclose(reloaded, expected, atol=1e-6)
