"""A deployed classifier (the classification and sentiment tasks): its tokenizer and one
onnxruntime session over encoder, head and softmax. onnxruntime, tokenizers and numpy only."""

import threading
from dataclasses import dataclass, field

import numpy as np

from thunder_dagster.deployments.pointers import Deployment
from thunder_dagster.modeling.cards import TOKENIZER_NAME, ModelCard
from thunder_dagster.modeling.heads import PROBABILITIES
from thunder_dagster.retrieval.graph import INPUTS
from thunder_dagster.serving.sessions import RefusedModelError, onnx_session, verified_bytes

PROBE_TEXT = "a probe of the classifier"


@dataclass(frozen=True)
class LoadedClassifier:
    deployment: Deployment
    card: ModelCard
    session: object
    tokenizer: object
    labels: tuple[str, ...]
    # A tokenizers Tokenizer's truncation settings are shared state: one caller at a time.
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False)

    @property
    def task(self) -> str:
        return self.card.task


def load_classifier(deployment: Deployment, card: ModelCard) -> LoadedClassifier:
    """Sessions for a classifier's files, refused unless the graph and the tokenizer hash to
    what was released and a probe gives one finite probability per label that sum to 1."""
    from tokenizers import Tokenizer

    if not card.labels:
        raise RefusedModelError(f"{deployment.card_path}: a {card.task} card without labels")
    session = onnx_session(verified_bytes(deployment.onnx_path, deployment.onnx_sha256))
    tokenizer_path = f"{deployment.model_dir}/{TOKENIZER_NAME}"
    raw = verified_bytes(tokenizer_path, card.files.get(TOKENIZER_NAME))
    tokenizer = Tokenizer.from_str(raw.decode("utf-8"))
    tokenizer.enable_truncation(max_length=card.context_length)
    tokenizer.no_padding()
    model = LoadedClassifier(deployment, card, session, tokenizer, tuple(card.labels))
    try:
        _, probe = classify(model, PROBE_TEXT)
    except Exception as error:  # onnxruntime raises plain Exceptions
        raise RefusedModelError(
            f"{deployment.onnx_path}: a probe failed ({type(error).__name__}: {error}); the "
            "previous model keeps serving"
        ) from error
    values = np.asarray(list(probe.values()))
    if not np.all(np.isfinite(values)) or abs(float(values.sum()) - 1.0) > 1e-3:
        raise RefusedModelError(
            f"{deployment.onnx_path}: the probe's probabilities are not finite or do not sum "
            "to 1; the previous model keeps serving"
        )
    return model


def classify(model: LoadedClassifier, text: str) -> tuple[str, dict[str, float]]:
    """The most probable label for `text` and every label's probability."""
    with model.lock:
        ids = model.tokenizer.encode(text).ids
    input_ids = np.asarray([ids], np.int64)
    feeds = dict(zip(INPUTS, (input_ids, np.ones_like(input_ids)), strict=True))
    (row,) = model.session.run([PROBABILITIES], feeds)
    probabilities = {label: float(p) for label, p in zip(model.labels, row[0], strict=True)}
    return model.labels[int(np.argmax(row[0]))], probabilities
