"""The lexical features: TF-IDF over token and token-pair features as scikit-learn computes
it from the same features, and the graph's own computation of them from padded token ids."""

import numpy as np
import pytest

from thunder_dagster.modeling.lexical import bags, features, fit_vocabulary, lexical_nodes

VOCAB = 50
BUCKETS = 4096  # few enough texts that no two of their pairs share one
SPECIALS = (1, 2)


def texts_of_ids(seed: int, count: int) -> list[list[int]]:
    """Token id lists framed by the special ids, with repeats, as a tokenizer gives them."""
    rng = np.random.default_rng(seed)
    return [
        [1, *rng.integers(3, 20, size=int(rng.integers(1, 12))).tolist(), 2] for _ in range(count)
    ]


def test_the_bags_are_scikit_learns_tfidf_of_the_same_features():
    from sklearn.feature_extraction.text import TfidfVectorizer

    training, later = texts_of_ids(0, 30), [*texts_of_ids(1, 10), [1, 2], [1, 45, 46, 2]]
    vocabulary = fit_vocabulary(training, VOCAB, SPECIALS, BUCKETS)
    assert vocabulary.size == vocabulary.known + 1 and vocabulary.idf[0] == 0
    assert not vocabulary.rows[list(SPECIALS)].any()  # special ids have no row of their own

    def analyzer(ids):
        return [int(f) for f in features(ids, VOCAB, BUCKETS) if f not in SPECIALS]

    reference = TfidfVectorizer(analyzer=analyzer, sublinear_tf=True).fit(training)
    assert len(reference.vocabulary_) == vocabulary.known
    expected = reference.transform(later).toarray()
    columns = vocabulary.rows[np.asarray(reference.get_feature_names_out(), np.int64)]
    ids, weights = bags(later, vocabulary)
    ours = np.zeros((len(later), vocabulary.size))
    for row in range(len(later)):
        np.add.at(ours[row], ids[row], weights[row])
    np.testing.assert_allclose(ours[:, columns], expected, atol=1e-6)
    assert not ours[:, 0].any()  # the row of every unknown feature carries no weight
    # Only special ids, or only features no training text had: all weights are 0.
    assert not weights[-2].any() and not weights[-1].any()


def test_the_graph_computes_the_same_sum_from_padded_token_ids():
    import onnx
    import onnxruntime
    from onnx import TensorProto, helper

    training, texts = texts_of_ids(2, 40), [*texts_of_ids(3, 6), [1, 2], [1, 7, 7, 7, 2]]
    vocabulary = fit_vocabulary(training, VOCAB, SPECIALS, BUCKETS)
    table = np.random.default_rng(4).normal(size=(vocabulary.size, 3)).astype(np.float32)
    ids, weights = bags(texts, vocabulary)
    expected = np.einsum("bl,blc->bc", weights, table[ids])

    nodes, initializers = lexical_nodes(vocabulary, table, "input_ids", "attention_mask", "out")
    graph = helper.make_graph(
        nodes,
        "lexical",
        [
            helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
            for name in ("input_ids", "attention_mask")
        ],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    session = onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    # One batch, padded to its longest text with a token the texts also use: the mask alone
    # keeps the padding out of the counts, the pairs and the norm.
    width = max(len(text) for text in texts)
    input_ids = np.full((len(texts), width), 7, np.int64)
    mask = np.zeros_like(input_ids)
    for row, text in enumerate(texts):
        input_ids[row, : len(text)] = text
        mask[row, : len(text)] = 1
    (batched,) = session.run(["out"], {"input_ids": input_ids, "attention_mask": mask})
    np.testing.assert_allclose(batched, expected, atol=1e-5)
    for row, text in enumerate(texts):
        single = np.asarray([text], np.int64)
        (alone,) = session.run(["out"], {"input_ids": single, "attention_mask": single * 0 + 1})
        np.testing.assert_allclose(alone[0], expected[row], atol=1e-5)
    assert not batched[-2].any()  # only the special ids


@pytest.mark.parametrize("ids", [[5], [5, 9, 5, 9]])
def test_features_are_the_tokens_then_each_pair_in_a_bucket_after_them(ids):
    found = features(ids, VOCAB, BUCKETS)
    assert found[: len(ids)].tolist() == ids
    assert len(found) == 2 * len(ids) - 1
    assert all(VOCAB <= f < VOCAB + BUCKETS for f in found[len(ids) :])
    if len(ids) == 4:
        assert found[4] == found[6]  # (5, 9) twice
