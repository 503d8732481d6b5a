"""Text from a deployed ONNX model: onnxruntime and numpy only, no TensorFlow, no Dagster."""

from dataclasses import dataclass

import numpy as np

from thunder_dagster.deployments.pointers import Deployment
from thunder_dagster.modeling.cards import ModelCard
from thunder_dagster.modeling.decoding import StepDecoder, WindowDecoder, sample
from thunder_dagster.modeling.text import Vocabulary
from thunder_dagster.serving.sessions import RefusedModelError, onnx_session, verified_bytes
from thunder_dagster.tasks.layouts import cut_answer, format_prompt


@dataclass(frozen=True)
class LoadedModel:
    deployment: Deployment
    card: ModelCard
    session: object
    step_session: object | None
    vocabulary: Vocabulary
    context_length: int

    @property
    def task(self) -> str:
        return self.card.task

    def decoder(self):
        if self.step_session is None:
            return WindowDecoder(self.session, self.context_length)
        # A GRU carries its state for ever; attention is bounded by its learned positions.
        bounded = self.deployment.family != "gru"
        return StepDecoder(self.step_session, self.context_length, bounded)


@dataclass(frozen=True)
class Generation:
    text: str
    confidence: float
    tokens: int


def load_generator(deployment: Deployment, card: ModelCard) -> LoadedModel:
    """Sessions for a generator's files, refused unless their hashes match and a probe
    through them gives finite logits of the card's shape (serving/loading.py refuses what
    does not load at all)."""
    window = onnx_session(verified_bytes(deployment.onnx_path, deployment.onnx_sha256))
    step = None
    if deployment.step_path:
        step = onnx_session(verified_bytes(deployment.step_path, deployment.step_sha256))
    model = LoadedModel(deployment, card, window, step, Vocabulary(card.vocab), card.context_length)
    probe = np.zeros((1, model.context_length), dtype=np.int32)
    try:
        logits = model.session.run(["logits"], {"tokens": probe})[0]
    except Exception as error:  # onnxruntime raises plain Exceptions (a shape the graph refuses)
        raise RefusedModelError(
            f"{deployment.onnx_path}: a probe of the card's context length "
            f"{model.context_length} failed ({type(error).__name__}: {error}); the previous "
            "model keeps serving"
        ) from error
    if logits.shape != (1, model.context_length, len(model.vocabulary.tokens)) or not np.all(
        np.isfinite(logits)
    ):
        raise RefusedModelError(
            f"{deployment.onnx_path}: the probe gave logits of shape {logits.shape} or "
            "non-finite values; the previous model keeps serving"
        )
    return model


def generate(
    model: LoadedModel,
    prompt: str,
    max_tokens: int = 200,
    temperature: float = 0.8,
    seed=None,
    context: str = "",
) -> Generation:
    """Sample one character at a time after the context and the prompt, with the step graph
    where there is one. An instruction or chat model gets the prompt laid out as its training
    pairs were, and its answer ends where the layout's next pair would begin.

    The confidence is the mean probability the model gave the characters it kept.
    """
    text = context + format_prompt(model.task, prompt)
    ids = list(model.vocabulary.encode(text or "\n"))
    produced, confidences = sample(
        model.decoder(), ids, max_tokens, temperature, np.random.default_rng(seed)
    )
    answer = cut_answer(model.task, model.vocabulary.decode(produced))
    confidences = confidences[: len(answer)]  # one character a token
    return Generation(
        text=answer,
        confidence=float(np.mean(confidences)) if len(confidences) else 0.0,
        tokens=len(answer),
    )
