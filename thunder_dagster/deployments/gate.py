"""The champion gate: a retrained model replaces the champion for everyone only when it is no
worse than the model serving, both scored on the same held-out data.

The new dataset's test split is read by each model through its own vocabulary and context
(nats per character, as `thunder compare` scores versions). Better, or worse by no more than
the agent's tolerance: released as champion. Worse: released as challenger, for an A/B test to
decide on real users, or refused (agent.json's `release.when_worse`). An agent's first model
has nothing to beat and is released directly. onnxruntime and numpy only, loaded when a model
is scored (the definitions import this module).
"""

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

WHEN_WORSE = ("challenger", "refuse")
# The windows of the test text each model reads (as `thunder compare`): the same for both.
TEST_WINDOWS = 512


@dataclass(frozen=True)
class ReleasePolicy:
    """What happens to a retrained model that scores worse than the champion."""

    when_worse: str = "challenger"
    # How much worse still counts as no worse, in nats per character of the test split.
    tolerance: float = 0.02


@dataclass(frozen=True)
class Measure:
    """What the gate compares: a generator's test loss (lower is better) or a classifier's
    macro F1 (higher is better); the tolerance is in its unit."""

    key: str  # the stem of its metadata keys: candidate_<key>, champion_<key>
    label: str
    unit: str
    higher_is_better: bool

    def no_worse(self, candidate: float, champion: float, tolerance: float) -> bool:
        if not math.isfinite(candidate):
            return False
        if self.higher_is_better:
            return candidate >= champion - tolerance
        return candidate <= champion + tolerance


TEST_LOSS = Measure("test_loss", "test loss", " nats/char", higher_is_better=False)
MACRO_F1 = Measure("macro_f1", "macro F1", "", higher_is_better=True)
MEASURES = {measure.key: measure for measure in (TEST_LOSS, MACRO_F1)}


@dataclass(frozen=True)
class GateVerdict:
    role: str | None  # champion, challenger, or None: refused
    candidate_score: float
    champion_version: str | None
    champion_score: float | None
    tolerance: float
    reason: str
    measure: Measure = TEST_LOSS

    @property
    def released(self) -> bool:
        return self.role is not None

    def metadata(self) -> dict:
        key = self.measure.key
        return {
            "gate": self.role or "refused",
            "gate_reason": self.reason,
            f"candidate_{key}": self.candidate_score,
            "champion_version": self.champion_version or "none",
            f"champion_{key}": self.champion_score if self.champion_score is not None else "-",
            "gate_tolerance": self.tolerance,
        }


def text_loss(model_dir: Path, onnx_bytes: bytes, text: str) -> float:
    """A model's mean loss per character on `text`, read through its own vocabulary and
    context (characters outside its vocabulary count as its unknown token)."""
    import numpy as np

    from thunder_dagster.modeling.cards import ModelCard
    from thunder_dagster.modeling.text import Vocabulary, sequential_windows
    from thunder_dagster.modeling.verification import onnx_loss
    from thunder_dagster.serving.sessions import onnx_session

    card = ModelCard.read(model_dir)
    ids = Vocabulary(card.vocab).encode(text)
    x, y = sequential_windows(ids, card.context_length, limit=TEST_WINDOWS)
    return onnx_loss(onnx_session(onnx_bytes), np.asarray(x, dtype=np.int32), y)


def judge(
    candidate: float,
    champion_version: str | None,
    champion: float | None,
    policy: ReleasePolicy,
    measure: Measure = TEST_LOSS,
) -> GateVerdict:
    """Where a retrained model goes, from its score and the champion's on the same test
    split."""
    verdict = partial(
        GateVerdict,
        candidate_score=candidate,
        champion_version=champion_version,
        champion_score=champion,
        tolerance=policy.tolerance,
        measure=measure,
    )
    if champion_version is None or champion is None:
        return verdict(
            role="champion",
            reason="the agent's first model (or the first of its kind): nothing to beat, "
            "released as champion",
        )
    scores = (
        f"{measure.label} {candidate:.4f} against champion {champion_version}'s "
        f"{champion:.4f}{measure.unit} on the same test split"
    )
    if measure.no_worse(candidate, champion, policy.tolerance):
        return verdict(
            role="champion",
            reason=f"{scores}: better, or within the tolerance of {policy.tolerance}",
        )
    worse = f"{scores}: worse by more than the tolerance of {policy.tolerance}"
    if policy.when_worse == "challenger":
        return verdict(
            role="challenger",
            reason=f"{worse}; released as challenger, for an A/B test on real users to decide",
        )
    return verdict(
        role=None,
        reason=f"{worse}; refused (the agent's release.when_worse is refuse), nothing moved",
    )


def classifier_scores(model, texts: list[str], truth: list[str]) -> tuple[float, float]:
    """A classifier's accuracy and macro F1 (over the labels of `truth`) on labelled texts;
    `model` is a Deployment or its like (a build's files), loaded and probed as served."""
    from sklearn.metrics import accuracy_score, f1_score

    from thunder_dagster.modeling.cards import ModelCard
    from thunder_dagster.serving.classification import classify, load_classifier

    loaded = load_classifier(model, ModelCard.read(model.model_dir))
    predicted = [classify(loaded, text)[0] for text in texts]
    every = sorted(set(truth))
    macro = f1_score(truth, predicted, labels=every, average="macro", zero_division=0)
    return float(accuracy_score(truth, predicted)), float(macro)


def labelled(deployment) -> bool:
    """Whether a deployment's model is a classifier's (its card's task is a labelled one); an
    adapter of the instruct base never is."""
    from thunder_dagster.adapters.releases import FAMILY
    from thunder_dagster.modeling.cards import ModelCard
    from thunder_dagster.tasks.registry import task_kind

    if deployment.family == FAMILY:
        return False
    return task_kind(ModelCard.read(deployment.model_dir).task).labelled


def judge_classifier(
    deployments_dir: Path, trained, texts: list[str], truth: list[str], policy: ReleasePolicy
) -> tuple[GateVerdict, dict]:
    """The verdict on a trained classifier (its model_dir, onnx_path and onnx_sha256) and the
    agent's serving one by macro F1 on the same labelled texts, and both accuracies (metadata);
    a serving model that is not a classifier is nothing to beat."""
    from thunder_dagster.deployments.pointers import Deployment, read_pointer
    from thunder_dagster.modeling.cards import CARD_NAME

    card_path = str(Path(trained.model_dir) / CARD_NAME)
    build = Deployment(
        deployments_dir.name, "candidate", "classifier", trained.model_dir, trained.onnx_path,
        trained.onnx_sha256, card_path, None, "",
    )  # fmt: skip
    accuracy, candidate = classifier_scores(build, texts, truth)
    accuracies = {"candidate_accuracy": accuracy, "champion_accuracy": "-"}
    champion = read_pointer(deployments_dir)
    if champion is None or not labelled(champion):
        return judge(candidate, None, None, policy, MACRO_F1), accuracies
    accuracies["champion_accuracy"], serving = classifier_scores(champion, texts, truth)
    return judge(candidate, champion.version, serving, policy, MACRO_F1), accuracies


SCORES_NAME = "challenger_scores.json"


@dataclass(frozen=True)
class PairScores:
    """The champion and the challenger on the same held-out data: what the low_quality alert
    compares (each card's own loss was measured on a text of its own: a fine-tune's on rated
    answers). Generators by test loss, classifiers by macro F1 (`measure`, a MEASURES key)."""

    champion: str
    challenger: str
    dataset_version: str
    champion_score: float
    challenger_score: float
    measure: str = TEST_LOSS.key

    @property
    def scored_by(self) -> Measure:
        return MEASURES[self.measure]

    def write(self, deployments_dir: Path) -> None:
        import json
        from dataclasses import asdict

        from thunder_dagster.files import write_atomically

        write_atomically(deployments_dir / SCORES_NAME, json.dumps(asdict(self)).encode())

    @classmethod
    def read(cls, deployments_dir: Path, champion: str, challenger: str) -> "PairScores | None":
        """The scores of exactly this pair, or None (none recorded, unreadable, or of another
        pair: a promotion or a new challenger since)."""
        import json

        try:
            data = json.loads((deployments_dir / SCORES_NAME).read_text())
            for role in ("champion", "challenger"):  # written before classifiers had a pair
                if f"{role}_loss" in data:
                    data[f"{role}_score"] = data.pop(f"{role}_loss")
            scores = cls(**data)
            scores.scored_by  # noqa: B018 - an unknown measure is an unreadable file
        except (OSError, ValueError, TypeError, KeyError, AttributeError):
            return None
        return scores if (scores.champion, scores.challenger) == (champion, challenger) else None


def score_pair(deployments_dir: Path, dataset_version: str, text: str) -> PairScores | None:
    """Score the serving champion and challenger on `text` and record it; None without both."""
    from thunder_dagster.deployments.pointers import read_pointer
    from thunder_dagster.serving.sessions import verified_bytes

    champion = read_pointer(deployments_dir)
    challenger = read_pointer(deployments_dir, "challenger")
    if champion is None or challenger is None:
        return None
    losses = [
        text_loss(Path(d.model_dir), verified_bytes(d.onnx_path, d.onnx_sha256), text)
        for d in (champion, challenger)
    ]
    scores = PairScores(champion.version, challenger.version, dataset_version, *losses)
    scores.write(deployments_dir)
    return scores
