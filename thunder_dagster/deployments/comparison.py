"""Two released versions of an agent side by side, on the same work: the same test text, the
same prompts, the same seed. onnxruntime and numpy only, so it runs wherever models are served.

For each version: its loss on the test split (nats per character, each model reading the text
through its own vocabulary), the confidence of its answers to the prompts (the mean
probability of the characters it chose, as the server logs it), the latency of one window at
batch 1 and per generated character, its size on disk and its parameter count, and its answer
to each prompt.
"""

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from thunder_dagster.deployments.pointers import Deployment, history
from thunder_dagster.deployments.versions import PATTERN
from thunder_dagster.files import sha256_of
from thunder_dagster.modeling.cards import CARD_NAME, ONNX_NAME, STEP_NAME, ModelCard
from thunder_dagster.modeling.text import sequential_windows
from thunder_dagster.modeling.verification import mean_milliseconds, onnx_loss
from thunder_dagster.serving.generation import LoadedModel, generate
from thunder_dagster.serving.loading import load_deployment
from thunder_dagster.tasks.registry import task_kind

PROMPT_CHARACTERS = 48
ANSWER_CHARACTERS = 64
TEST_WINDOWS = 512
LATENCY_REPEATS = 30


class ComparisonError(ValueError):
    """Versions that cannot be compared: the message says which and why."""


@dataclass(frozen=True)
class VersionScore:
    version: str
    family: str
    change: str
    parameters: int
    size_bytes: int
    test_loss: float
    unknown_characters: int  # characters of the test text outside the version's vocabulary
    confidences: tuple[float, ...]  # one per prompt
    latency_ms_batch_1: float
    ms_per_character: float
    samples: tuple[str, ...]  # one per prompt

    @property
    def confidence_quantiles(self) -> tuple[float, float, float]:
        p10, p50, p90 = np.quantile(self.confidences, [0.1, 0.5, 0.9])
        return float(p10), float(p50), float(p90)


@dataclass(frozen=True)
class Comparison:
    agent_id: str
    dataset_version: str
    test_characters: int
    prompts: tuple[str, ...]
    seed: int
    temperature: float
    a: VersionScore
    b: VersionScore

    def rows(self) -> list[list[str]]:
        """The table both the asset and `thunder compare` show: one row a measure."""
        a, b = self.a, self.b

        def quantiles(score: VersionScore) -> str:
            return " / ".join(f"{q:.3f}" for q in score.confidence_quantiles)

        return [
            ["family", a.family, b.family],
            ["made by", a.change, b.change],
            ["test loss (nats/char)", f"{a.test_loss:.4f}", f"{b.test_loss:.4f}"],
            [
                "test chars outside its vocabulary",
                str(a.unknown_characters),
                str(b.unknown_characters),
            ],
            ["confidence p10 / p50 / p90", quantiles(a), quantiles(b)],
            [
                "latency, one window at batch 1 (ms)",
                f"{a.latency_ms_batch_1:.3f}",
                f"{b.latency_ms_batch_1:.3f}",
            ],
            ["generation (ms per char)", f"{a.ms_per_character:.3f}", f"{b.ms_per_character:.3f}"],
            ["size on disk (KiB)", f"{a.size_bytes / 1024:.1f}", f"{b.size_bytes / 1024:.1f}"],
            ["parameters", f"{a.parameters:,}", f"{b.parameters:,}"],
        ]

    def sample_rows(self) -> list[list[str]]:
        """Prompt and both answers, one row a prompt, as Markdown table cells."""
        return [
            [_cell(prompt), _cell(first), _cell(second)]
            for prompt, first, second in zip(
                self.prompts, self.a.samples, self.b.samples, strict=True
            )
        ]


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " \u21b5 ")


def released_deployment(models_dir: Path, deployments_dir: Path, version: str) -> Deployment:
    """The version as it was deployed (with the hashes its checks passed on), or, for one that
    never served, as its folder holds it now."""
    if not PATTERN.match(version):
        raise ComparisonError(f"version {version!r}: give a released version like 1.2.0")
    folder = models_dir / version
    if not (folder / ONNX_NAME).is_file():
        released = (
            sorted(p.name for p in models_dir.iterdir() if PATTERN.match(p.name))
            if models_dir.is_dir()
            else []
        )
        raise ComparisonError(
            f"{models_dir.name} {version}: no model under models/ (pruned, or never released); "
            f"released: {', '.join(released) or 'none'}"
        )
    for event in reversed(history(deployments_dir)):
        if event.get("action") == "deploy" and event["deployment"]["version"] == version:
            return Deployment(**event["deployment"])
    card = ModelCard.read(folder)
    step = folder / STEP_NAME
    return Deployment(
        agent_id=card.agent_id,
        version=version,
        family=card.family,
        model_dir=str(folder),
        onnx_path=str(folder / ONNX_NAME),
        onnx_sha256=sha256_of(folder / ONNX_NAME),
        card_path=str(folder / CARD_NAME),
        registry_version=card.registry_version,
        deployed_at="",
        step_path=str(step) if step.is_file() else None,
        step_sha256=sha256_of(step) if step.is_file() else None,
    )


def prompts_from(text: str, count: int) -> tuple[str, ...]:
    """`count` prompts cut from the test text at evenly spaced places, each starting at a word."""
    if len(text) < PROMPT_CHARACTERS * 2:
        raise ComparisonError(
            f"the test text holds {len(text)} characters, too few to cut prompts from"
        )
    prompts = []
    for start in np.linspace(0, len(text) - PROMPT_CHARACTERS - 1, count).astype(int):
        space = text.find(" ", start, start + PROMPT_CHARACTERS // 2)
        begin = space + 1 if space >= 0 else start
        prompts.append(text[begin : begin + PROMPT_CHARACTERS])
    return tuple(prompts)


def _parameters(model: LoadedModel) -> int:
    from onnx import load_model_from_string, numpy_helper

    graph = load_model_from_string(Path(model.deployment.onnx_path).read_bytes()).graph
    return int(sum(numpy_helper.to_array(tensor).size for tensor in graph.initializer))


def score_version(
    model: LoadedModel, test_text: str, prompts: tuple[str, ...], seed: int, temperature: float
) -> VersionScore:
    vocabulary, context = model.vocabulary, model.context_length
    known = set(vocabulary.tokens)
    ids = vocabulary.encode(test_text)
    x, y = sequential_windows(ids, context, limit=TEST_WINDOWS)
    loss = onnx_loss(model.session, x.astype(np.int32), y)
    window = np.asarray(x[:1], dtype=np.int32)
    latency = mean_milliseconds(
        lambda: model.session.run(["logits"], {"tokens": window}), LATENCY_REPEATS
    )
    answers, started, produced = [], time.perf_counter(), 0
    for number, prompt in enumerate(prompts):
        answer = generate(model, prompt, ANSWER_CHARACTERS, temperature, seed=seed + number)
        answers.append(answer)
        produced += answer.tokens
    per_character = (time.perf_counter() - started) * 1000 / max(produced, 1)
    folder = Path(model.deployment.model_dir)
    return VersionScore(
        version=model.deployment.version,
        family=model.deployment.family,
        change=model.card.change,
        parameters=_parameters(model),
        size_bytes=sum(path.stat().st_size for path in folder.iterdir() if path.is_file()),
        test_loss=loss,
        unknown_characters=sum(1 for character in test_text if character not in known),
        confidences=tuple(answer.confidence for answer in answers),
        latency_ms_batch_1=latency,
        ms_per_character=per_character,
        samples=tuple(answer.text for answer in answers),
    )


def compare_versions(
    models_dir: Path,
    deployments_dir: Path,
    version_a: str,
    version_b: str,
    test_text: str,
    dataset_version: str,
    prompts: int = 8,
    seed: int = 0,
    temperature: float = 0.8,
) -> Comparison:
    """Both versions scored on `test_text` and answering the same prompts with the same seed;
    each is loaded as the server loads it (its hashes checked, a probe through it)."""
    if version_a == version_b:
        raise ComparisonError(f"both versions are {version_a}: give two different versions")
    cut = prompts_from(test_text, prompts)
    scores = []
    for version in (version_a, version_b):
        model = load_deployment(released_deployment(models_dir, deployments_dir, version))
        if task_kind(model.task).labelled:
            raise ComparisonError(
                f"version {version} is a {model.task} classifier and {version_a} a text "
                "generator: compare two versions of one kind (`thunder versions AGENT` lists "
                "them)"
            )
        scores.append(score_version(model, test_text, cut, seed, temperature))
    if not all(math.isfinite(score.test_loss) for score in scores):
        raise ComparisonError(
            f"a test loss is not finite ({scores[0].test_loss}, {scores[1].test_loss}): "
            "a diverged model; its deployment checks would have refused it"
        )
    return Comparison(
        models_dir.name, dataset_version, len(test_text), cut, seed, temperature, *scores
    )
