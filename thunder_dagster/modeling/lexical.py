"""Lexical features beside the sentence vectors: a text's WordPiece tokens and hashed token
pairs, weighted by TF-IDF (sublinear term frequency, smoothed inverse document frequency
learnt from the training texts, unit length), as a linear model over them reads them.

A sentence encoder keeps what a text is about and loses the words it says it with; who is
speaking, or which product a review names, lives in those words. The features are a function
of the token ids the classifier's graph already takes, so the graph computes them itself
(`lexical_nodes`) and a caller sends nothing new. Numpy and onnx only.

Per text, with f the features of its tokens (one per token, one per adjacent pair), c(f) the
times f occurs and idf(f) its weight (0 for a feature no training text had, and for the
tokenizer's special tokens):

    value(f) = (1 + ln c(f)) * idf(f),    weight(f) = value(f) / ||value||
"""

from dataclasses import dataclass

import numpy as np

PAIR_BUCKETS = 2**18  # hashed adjacent-token pairs; collisions are rare at thousands of texts
MIN_NORM = 1e-12  # a text with no known feature: every weight is 0


@dataclass(frozen=True)
class LexicalVocabulary:
    """The features some training text had, each with a row of its own (row 0 stands for
    every other feature), and their inverse document frequencies."""

    vocab_size: int
    pair_buckets: int
    rows: np.ndarray  # int32 [vocab_size + pair_buckets]: a feature's row, 0 if unknown
    idf: np.ndarray  # float32 [known + 1], idf[0] = 0

    @property
    def size(self) -> int:
        """Rows of a table over the features: the known ones and row 0."""
        return len(self.idf)

    @property
    def known(self) -> int:
        return len(self.idf) - 1


def features(ids, vocab_size: int, pair_buckets: int = PAIR_BUCKETS) -> np.ndarray:
    """One feature per token (its id) and one per adjacent pair (a bucket after the tokens)."""
    ids = np.asarray(ids, np.int64)
    pairs = vocab_size + (ids[:-1] * vocab_size + ids[1:]) % pair_buckets
    return np.concatenate([ids, pairs])


def fit_vocabulary(
    token_lists: list[list[int]],
    vocab_size: int,
    special_ids: tuple[int, ...] = (),
    pair_buckets: int = PAIR_BUCKETS,
) -> LexicalVocabulary:
    """idf(f) = ln((1 + n) / (1 + df(f))) + 1 over the n training texts, for each feature
    with df(f) > 0 that is not a special token's."""
    frequency = np.zeros(vocab_size + pair_buckets, np.int64)
    for ids in token_lists:
        frequency[np.unique(features(ids, vocab_size, pair_buckets))] += 1
    frequency[list(special_ids)] = 0
    (known,) = np.nonzero(frequency)
    rows = np.zeros(vocab_size + pair_buckets, np.int32)
    rows[known] = np.arange(1, len(known) + 1, dtype=np.int32)
    idf = np.zeros(len(known) + 1, np.float32)
    idf[1:] = np.log((1 + len(token_lists)) / (1 + frequency[known])) + 1
    return LexicalVocabulary(vocab_size, pair_buckets, rows, idf)


def bags(
    token_lists: list[list[int]], vocabulary: LexicalVocabulary
) -> tuple[np.ndarray, np.ndarray]:
    """Each text's known features (their rows) and weights, padded with row 0 at weight 0:
    (int32 [texts, most features], float32 [texts, most features])."""
    rows = []
    for ids in token_lists:
        found, counts = np.unique(
            features(ids, vocabulary.vocab_size, vocabulary.pair_buckets), return_counts=True
        )
        found = vocabulary.rows[found]
        values = (1 + np.log(counts)) * vocabulary.idf[found].astype(np.float64)
        kept = values > 0
        found, values = found[kept], values[kept]
        rows.append((found, values / max(float(np.sqrt(np.sum(values**2))), MIN_NORM)))
    width = max([1, *(len(found) for found, _ in rows)])
    ids = np.zeros((len(rows), width), np.int32)
    weights = np.zeros((len(rows), width), np.float32)
    for row, (found, values) in enumerate(rows):
        ids[row, : len(found)] = found
        weights[row, : len(found)] = values
    return ids, weights


def lexical_nodes(
    vocabulary: LexicalVocabulary, table: np.ndarray, input_ids: str, mask: str, output: str
):
    """ONNX nodes and initializers for sum over f of weight(f) * table[row(f)], from the token
    ids and their mask ([batch, sequence] int64) to `output` ([batch, width] float32): the
    same features and weights as `bags`, computed per position (a feature that occurs c times
    carries 1/c of its weight at each of its positions)."""
    from onnx import TensorProto, helper, numpy_helper

    nodes, initializers = [], []

    def constant(name: str, value) -> str:
        initializers.append(numpy_helper.from_array(np.asarray(value), f"lex_{name}"))
        return f"lex_{name}"

    def node(op: str, inputs: list[str], name: str, **attributes) -> str:
        nodes.append(helper.make_node(op, inputs, [f"lex_{name}"], **attributes))
        return f"lex_{name}"

    zero, one, end = (
        constant(n, np.array([v], np.int64)) for n, v in (("0", 0), ("1", 1), ("end", 2**62))
    )
    axis = constant("axis", np.array([1], np.int64))
    here = node(
        "Slice", [input_ids, zero, constant("last", np.array([-1], np.int64)), axis], "here"
    )
    after = node("Slice", [input_ids, one, end, axis], "after")
    scaled = node("Mul", [here, constant("vocab", np.int64(vocabulary.vocab_size))], "scaled")
    combined = node("Add", [scaled, after], "combined")
    bucket = node(
        "Mod", [combined, constant("buckets", np.int64(vocabulary.pair_buckets))], "bucket"
    )
    pairs = node("Add", [bucket, "lex_vocab"], "pairs")
    feature_ids = node("Concat", [input_ids, pairs], "features", axis=1)
    table_rows = constant("table_rows", vocabulary.rows.astype(np.int32))
    found = node("Gather", [table_rows, feature_ids], "found")  # unknown features: row 0
    mask_here = node("Slice", [mask, zero, "lex_last", axis], "mask_here")
    mask_after = node("Slice", [mask, one, end, axis], "mask_after")
    pair_mask = node("Mul", [mask_here, mask_after], "pair_mask")
    valid_int = node("Concat", [mask, pair_mask], "valid_int", axis=1)
    valid = node("Cast", [valid_int], "valid", to=TensorProto.FLOAT)
    # c(f) at each position: how many valid positions of the same text hold the same feature.
    down = node("Unsqueeze", [found, constant("axis2", np.array([2], np.int64))], "down")
    across = node("Unsqueeze", [found, axis], "across")
    same = node("Cast", [node("Equal", [down, across], "equal")], "same", to=TensorProto.FLOAT)
    valid_columns = node("Unsqueeze", [valid, axis], "valid_columns")
    counted = node("Mul", [same, valid_columns], "counted")
    counts = node("ReduceSum", [counted, "lex_axis2"], "counts", keepdims=0)
    safe = node("Max", [counts, constant("one_f", np.float32(1.0))], "safe")
    tf = node("Add", [node("Log", [safe], "log"), "lex_one_f"], "tf")
    idf = node("Gather", [constant("idf", vocabulary.idf.astype(np.float32)), found], "idf_of")
    value = node("Mul", [node("Mul", [tf, idf], "raw"), valid], "value")
    share = node("Div", [value, safe], "share")  # this position's part of value(f)
    squares = node("Mul", [share, value], "squares")  # value(f)^2 / c(f), c(f) times
    norm2 = node("ReduceSum", [squares, axis], "norm2", keepdims=1)
    floor = constant("floor", np.float32(MIN_NORM**2))
    norm = node("Sqrt", [node("Max", [norm2, floor], "norm2_safe")], "norm")
    weight = node("Div", [share, norm], "weight")
    rows_of = node("Gather", [constant("table", np.asarray(table, np.float32)), found], "rows_of")
    weighted = node(
        "Mul", [rows_of, node("Unsqueeze", [weight, "lex_axis2"], "weight3")], "weighted"
    )
    nodes.append(helper.make_node("ReduceSum", [weighted, axis], [output], keepdims=0))
    return nodes, initializers
