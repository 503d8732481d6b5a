"""Drift of an agent's queries from its training text (seed 001's drift score).

Each query gets a score in standard deviations of the agent's own held-out text:

- loss: the champion's mean per-character loss on the query, against its losses on pieces of
  the test split cut to the queries' own lengths (a short text costs more per character, so
  the reference has the same lengths);
- distance (where the agent has a retrieval index): the cosine distance from the query to its
  nearest chunk, against the same for the test split's pieces, each measured to the chunks
  that do not hold it (so a piece is not found in its own chunk).

A query's score is the mean of the two (the loss alone without an index); the day's drift is
the 95th percentile of its queries' scores. A classifier's queries are scored the same way,
against its labelled test split: its uncertainty (-ln of the top label's probability) in place
of the loss, and the distance to the nearest training example in place of the nearest chunk.
The two-sample Kolmogorov-Smirnov test of the losses (scipy) is reported beside it.

Libraries made for drift were weighed and left out: alibi-detect 0.13 requires numpy below 2
(this project runs numpy 2.4) and pulls opencv, numba and transformers; Evidently 0.7 pulls a
web server, plotly, nltk and statsmodels. For one univariate two-sample test and a
percentile, scipy (already a dependency, and what alibi-detect's KSDrift itself calls)
serves better.
"""

from dataclasses import dataclass

import numpy as np

REFERENCE_PIECES = 300
MIN_QUERIES = 5


@dataclass(frozen=True)
class DriftReport:
    queries: int
    p95: float  # the day's drift score
    loss_p95: float
    distance_p95: float | None
    ks_statistic: float
    ks_p_value: float
    scores: np.ndarray  # per query, in the queries' order


def text_losses(session, vocabulary, context: int, texts: list[str]) -> np.ndarray:
    """Each text's mean cross-entropy (nats per character) under the window graph, every
    character predicted from the ones before it (back-to-back windows of `context`); NaN for a
    text of fewer than two characters. Windows are right-padded: the graph is causal, so the
    padding never reaches a position that counts."""
    windows, owners, lengths = [], [], []
    for number, text in enumerate(texts):
        ids = vocabulary.encode(text)
        for start in range(0, max(len(ids) - 1, 0), context):
            piece = ids[start : start + context + 1]
            x = np.zeros(context, dtype=np.int32)
            x[: len(piece) - 1] = piece[:-1]
            windows.append((x, piece[1:]))
            owners.append(number)
            lengths.append(len(piece) - 1)
    totals = np.zeros(len(texts))
    counts = np.zeros(len(texts))
    batch = 64
    for first in range(0, len(windows), batch):
        group = windows[first : first + batch]
        logits = session.run(["logits"], {"tokens": np.stack([x for x, _ in group])})[0]
        logits = logits.astype(np.float64)
        peak = logits.max(-1, keepdims=True)
        log_norm = np.log(np.exp(logits - peak).sum(-1)) + peak[..., 0]
        for row, (_, targets) in enumerate(group):
            n = len(targets)
            picked = logits[row, np.arange(n), targets]
            owner = owners[first + row]
            totals[owner] += float((log_norm[row, :n] - picked).sum())
            counts[owner] += n
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, totals / np.maximum(counts, 1), np.nan)


def reference_pieces(
    text: str, lengths: list[int], count: int = REFERENCE_PIECES, seed: int = 0
) -> list[str]:
    """`count` pieces of `text` at random places, their lengths drawn from `lengths`."""
    rng = np.random.default_rng(seed)
    pieces = []
    for length in rng.choice(np.asarray(lengths), size=count):
        length = int(min(max(length, 2), len(text)))
        start = int(rng.integers(0, len(text) - length + 1))
        pieces.append(text[start : start + length])
    return pieces


def nearest_distances(queries: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    """Each query vector's cosine distance to its nearest row of `vectors` (unit vectors)."""
    return 1.0 - (np.asarray(queries, np.float32) @ np.asarray(vectors, np.float32).T).max(1)


def piece_distances(pieces: list[str], piece_vectors: np.ndarray, chunks, vectors) -> np.ndarray:
    """Each piece's cosine distance to its nearest chunk among those that hold neither half of
    it: how far the agent's own text lies from the rest of its documents."""
    similarity = np.asarray(piece_vectors, np.float32) @ np.asarray(vectors, np.float32).T
    texts = [chunk.text for chunk in chunks]
    for row, piece in enumerate(pieces):
        half = len(piece) // 2
        for column, text in enumerate(texts):
            if piece[:half] in text or piece[half:] in text:
                similarity[row, column] = -np.inf
    best = similarity.max(1)
    return 1.0 - best[np.isfinite(best)]


def _standardised(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    reference = reference[np.isfinite(reference)]
    spread = float(reference.std()) or 1e-9
    return (values - float(reference.mean())) / spread


def drift_report(
    query_losses: np.ndarray,
    reference_losses: np.ndarray,
    query_distances: np.ndarray | None = None,
    reference_distances: np.ndarray | None = None,
) -> DriftReport:
    from scipy.stats import ks_2samp

    keep = np.isfinite(query_losses)
    losses = _standardised(query_losses[keep], reference_losses)
    scores = losses
    distances = None
    if query_distances is not None and reference_distances is not None:
        distances = _standardised(np.asarray(query_distances)[keep], reference_distances)
        scores = (losses + distances) / 2
    test = ks_2samp(query_losses[keep], reference_losses[np.isfinite(reference_losses)])
    return DriftReport(
        queries=int(keep.sum()),
        p95=float(np.percentile(scores, 95)),
        loss_p95=float(np.percentile(losses, 95)),
        distance_p95=float(np.percentile(distances, 95)) if distances is not None else None,
        ks_statistic=float(test.statistic),
        ks_p_value=float(test.pvalue),
        scores=scores,
    )


def classifier_report(
    model, encode, queries: list[str], train_texts: list[str], test_texts: list[str]
) -> DriftReport:
    """A classifier's drift: each query's uncertainty and its distance (in the encoder's
    space, `encode` giving unit vectors) to the nearest training example, against the same for
    the labelled test split."""
    from thunder_dagster.serving.classification import classify

    def uncertainty(texts: list[str]) -> np.ndarray:
        tops = [max(classify(model, text)[1].values()) for text in texts]
        return -np.log(np.clip(np.asarray(tops, np.float64), 1e-12, 1.0))

    known = encode(train_texts)
    return drift_report(
        uncertainty(queries),
        uncertainty(test_texts),
        nearest_distances(encode(queries), known),
        nearest_distances(encode(test_texts), known),
    )
