"""The classifier core on real sentence vectors: a split that keeps every label in every part,
a searched head that beats the majority class on held-out texts, and its export as one ONNX
graph (encoder, head, softmax) that agrees with Keras."""

import numpy as np
import pytest

from tests.factories import sentence_encoder
from tests.factories import topic_examples as labelled
from thunder_dagster.modeling.classifiers import (
    ClassifierBudget,
    LabelledDataError,
    split_labelled,
    train_classifier,
)
from thunder_dagster.modeling.heads import (
    PARITY_TOLERANCE,
    classifier_graph,
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
    graph = classifier_graph(encoder.graph_path, head_graph(model, result.params["activation"]))
    path = tmp_path / "classifier.onnx"
    path.write_bytes(graph.SerializeToString())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probe = texts[:6]
    exported = run_classifier(session, encoder.tokens(probe))
    from thunder_dagster.modeling.classifiers import probabilities

    expected = probabilities(model, encoder.encode(probe))
    assert np.abs(exported - expected).max() < PARITY_TOLERANCE
    np.testing.assert_allclose(exported.sum(-1), 1.0, atol=1e-5)
