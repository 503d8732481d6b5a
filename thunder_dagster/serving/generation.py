"""Text from a deployed ONNX model: onnxruntime and numpy only, no TensorFlow, no Dagster."""

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thunder_dagster.deployments.pointers import Deployment, read_pointer
from thunder_dagster.modeling.text import Vocabulary


class NoDeploymentError(LookupError):
    pass


@dataclass(frozen=True)
class LoadedModel:
    deployment: Deployment
    card: dict
    session: object
    vocabulary: Vocabulary
    context_length: int


@dataclass(frozen=True)
class Generation:
    text: str
    confidence: float
    tokens: int


def load_deployed(deployments_dir: Path) -> LoadedModel:
    """The champion the pointer names, refused when its file no longer matches the pointer."""
    import onnxruntime

    deployment = read_pointer(deployments_dir)
    if deployment is None:
        raise NoDeploymentError(
            f"no deployment at {deployments_dir}: train the agent first (thunder train AGENT_ID)"
        )
    data = Path(deployment.onnx_path).read_bytes()
    if hashlib.sha256(data).hexdigest() != deployment.onnx_sha256:
        raise NoDeploymentError(
            f"{deployment.onnx_path} does not match the hash its deployment recorded; "
            "redeploy or roll back"
        )
    card = json.loads(Path(deployment.card_path).read_text())
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return LoadedModel(
        deployment, card, session, Vocabulary(tuple(card["vocab"])), int(card["context_length"])
    )


def generate(
    model: LoadedModel, prompt: str, max_tokens: int = 200, temperature: float = 0.8, seed=None
) -> Generation:
    """Sample one character at a time from the logits at the end of the prompt's window.

    Windows shorter than the context are padded on the right: every family is causal, so the
    padding never reaches the position that is read.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    rng = np.random.default_rng(seed)
    ids = list(model.vocabulary.encode(prompt or "\n"))
    context = model.context_length
    produced, confidences = [], []
    for _ in range(max_tokens):
        window = ids[-context:]
        tokens = np.zeros((1, context), dtype=np.int32)
        tokens[0, : len(window)] = window
        logits = model.session.run(["logits"], {"tokens": tokens})[0][0, len(window) - 1]
        logits = logits.astype(np.float64)
        probabilities = np.exp(logits - logits.max())
        probabilities /= probabilities.sum()
        if temperature == 0:
            choice = int(probabilities.argmax())
        else:
            tempered = np.exp((logits - logits.max()) / temperature)
            choice = int(rng.choice(len(tempered), p=tempered / tempered.sum()))
        confidences.append(float(probabilities[choice]))
        produced.append(choice)
        ids.append(choice)
    return Generation(
        text=model.vocabulary.decode(produced),
        confidence=float(np.mean(confidences)) if confidences else 0.0,
        tokens=len(produced),
    )
