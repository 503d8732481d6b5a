"""Text from a deployed ONNX model: onnxruntime and numpy only, no TensorFlow, no Dagster."""

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thunder_dagster.deployments.pointers import Deployment, read_pointer
from thunder_dagster.modeling.cards import ModelCard
from thunder_dagster.modeling.decoding import StepDecoder, WindowDecoder, sample
from thunder_dagster.modeling.text import Vocabulary
from thunder_dagster.tasks import LABEL_TASKS, cut_answer, format_prompt


class NoDeploymentError(LookupError):
    pass


class RefusedModelError(RuntimeError):
    """A deployed file that must not serve: changed since its checks, or unusable."""


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


def _verified_bytes(path: str, expected: str | None) -> bytes:
    data = Path(path).read_bytes()
    if expected is not None and hashlib.sha256(data).hexdigest() != expected:
        raise RefusedModelError(
            f"{path} does not match the hash its deployment recorded; redeploy or roll back"
        )
    return data


def load_deployment(deployment: Deployment) -> LoadedModel:
    """Sessions for a deployment's files, refused unless their hashes match and a probe
    through them gives finite logits of the card's shape."""
    import onnxruntime

    try:
        card = ModelCard.read(deployment.model_dir)
        if card.task in LABEL_TASKS:
            from thunder_dagster.serving.classification import load_classifier

            return load_classifier(deployment, card, _verified_bytes)
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        window = onnxruntime.InferenceSession(
            _verified_bytes(deployment.onnx_path, deployment.onnx_sha256),
            options,
            providers=["CPUExecutionProvider"],
        )
        step = None
        if deployment.step_path:
            step = onnxruntime.InferenceSession(
                _verified_bytes(deployment.step_path, deployment.step_sha256),
                options,
                providers=["CPUExecutionProvider"],
            )
        model = LoadedModel(
            deployment,
            card,
            window,
            step,
            Vocabulary(card.vocab),
            card.context_length,
        )
    except RefusedModelError:
        raise
    except Exception as error:
        raise RefusedModelError(
            f"{deployment.agent_id} {deployment.version}: cannot load {deployment.model_dir}: "
            f"{error}"
        ) from error
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


def load_deployed(deployments_dir: Path, role: str = "champion") -> LoadedModel:
    """The model the role's pointer names (champion by default)."""
    deployment = read_pointer(deployments_dir, role)
    if deployment is None:
        raise NoDeploymentError(
            f"no {role} deployment at {deployments_dir}: train the agent first "
            "(thunder train AGENT_ID)"
        )
    try:
        return load_deployment(deployment)
    except RefusedModelError as error:
        raise NoDeploymentError(str(error)) from error


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
