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
class GateVerdict:
    role: str | None  # champion, challenger, or None: refused
    candidate_loss: float
    champion_version: str | None
    champion_loss: float | None
    tolerance: float
    reason: str

    @property
    def released(self) -> bool:
        return self.role is not None

    def metadata(self) -> dict:
        return {
            "gate": self.role or "refused",
            "gate_reason": self.reason,
            "candidate_test_loss": self.candidate_loss,
            "champion_version": self.champion_version or "none",
            "champion_test_loss": self.champion_loss if self.champion_loss is not None else "-",
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
    candidate_loss: float,
    champion_version: str | None,
    champion_loss: float | None,
    policy: ReleasePolicy,
) -> GateVerdict:
    """Where a retrained model goes, from its loss and the champion's on the same text."""
    if champion_version is None or champion_loss is None:
        return GateVerdict(
            "champion",
            candidate_loss,
            None,
            None,
            policy.tolerance,
            "the agent's first model: nothing to beat, released as champion",
        )
    scores = (
        f"test loss {candidate_loss:.4f} against champion {champion_version}'s "
        f"{champion_loss:.4f} nats/char on the same test split"
    )
    if math.isfinite(candidate_loss) and candidate_loss <= champion_loss + policy.tolerance:
        return GateVerdict(
            "champion",
            candidate_loss,
            champion_version,
            champion_loss,
            policy.tolerance,
            f"{scores}: better, or within the tolerance of {policy.tolerance}",
        )
    worse = f"{scores}: worse by more than the tolerance of {policy.tolerance}"
    if policy.when_worse == "challenger":
        return GateVerdict(
            "challenger",
            candidate_loss,
            champion_version,
            champion_loss,
            policy.tolerance,
            f"{worse}; released as challenger, for an A/B test on real users to decide",
        )
    return GateVerdict(
        None,
        candidate_loss,
        champion_version,
        champion_loss,
        policy.tolerance,
        f"{worse}; refused (the agent's release.when_worse is refuse), nothing moved",
    )


SCORES_NAME = "challenger_scores.json"


@dataclass(frozen=True)
class PairScores:
    """The champion and the challenger on the same text: what the low_quality alert compares
    (each card's own loss was measured on a text of its own: a fine-tune's on rated answers)."""

    champion: str
    challenger: str
    dataset_version: str
    champion_loss: float
    challenger_loss: float

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
            scores = cls(**json.loads((deployments_dir / SCORES_NAME).read_text()))
        except (OSError, ValueError, TypeError):
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
