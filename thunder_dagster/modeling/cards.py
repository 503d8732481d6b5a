"""The model card: what a model folder holds and what is known of the model in it.

Every model folder (a build, a released version) has one card.json beside model.keras,
model.onnx and step.onnx. `ModelCard.write` is its one writer (atomic) and `ModelCard.read` its
one reader; the file names live here and nowhere else. No TensorFlow: the server reads cards.
"""

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from thunder_dagster.files import write_atomically

CARD_NAME = "card.json"
KERAS_NAME = "model.keras"
ONNX_NAME = "model.onnx"
STEP_NAME = "step.onnx"
TOKENIZER_NAME = "tokenizer.json"  # a classifier's: the sentence encoder's tokenizer
LOSS_CURVES_NAME = "loss_curves.png"


class UnreadableCardError(ValueError):
    """A card.json that is missing, not JSON, or lacks what every card has."""


@dataclass(frozen=True)
class CardMetrics:
    """Losses in nats per character. `validation_loss` picked the model (trial, best epoch);
    `test_loss` is on text nothing in its training saw, and is the one to report. The unigram
    baseline is on the test split too (on the validation split in cards from before it)."""

    validation_loss: float
    unigram_loss: float
    epochs: int = 0
    train_seconds: float = 0.0
    test_loss: float | None = None  # None in cards written before the three-way split


@dataclass(frozen=True)
class ExportSummary:
    """What the ONNX export and its checks found; the signature every family shares."""

    test_loss: float | None  # the ONNX graph's, on the test split
    parity_max_abs_difference: float
    latency_ms: dict[str, float]
    step_graph: bool
    checks: dict[str, bool]
    input: dict = field(default_factory=dict)
    output: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ClassifierMetrics:
    """A classifier's measures on a test split (modeling/evaluation.py's `measure`)."""

    labels: tuple[str, ...]
    accuracy: float
    macro_f1: float
    precision: tuple[float, ...]  # per label, in `labels` order
    recall: tuple[float, ...]
    f1: tuple[float, ...]
    support: tuple[int, ...]
    confusion: tuple[tuple[int, ...], ...]  # rows: the true label, columns: the predicted
    majority_label: str
    majority_accuracy: float
    majority_macro_f1: float

    @property
    def beats_majority(self) -> bool:
        """Better than always answering the most common training label, on both measures."""
        return self.accuracy > self.majority_accuracy and self.macro_f1 > self.majority_macro_f1


@dataclass(frozen=True)
class ClassifierMeasures(ClassifierMetrics):
    """A classifier's measures on its test split (through the exported graph) and what it is
    made of: the encoder, the lexical features and the weights its two parts are mixed by."""

    encoder: str = ""
    lexical_features: int = 0
    words_weight: float = 0.0
    head_weight: float = 1.0

    @classmethod
    def from_dict(cls, data: dict) -> "ClassifierMeasures":
        values = _known(cls, data)
        for name in ("labels", "precision", "recall", "f1", "support"):
            values[name] = tuple(values.get(name, ()))
        values["confusion"] = tuple(tuple(row) for row in values.get("confusion", ()))
        return cls(**values)


def _known(cls, data: dict) -> dict:
    """The entries of `data` that are fields of `cls`: a card from an older or newer version
    of thunder-dagster still reads."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}


@dataclass(frozen=True)
class ModelCard:
    agent_id: str
    family: str
    params: dict
    context_length: int
    vocab: tuple[str, ...]
    metrics: CardMetrics
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    dataset_version: str = ""
    validation_fraction: float = 0.1
    change: str = "retrain"  # retrain, fine_tune or distillation: what made this model
    parent_version: str | None = None
    study: str | None = None
    best_trial: int | None = None
    examples: int | None = None
    learning_rate: float | None = None
    mlflow_run_id: str | None = None
    created_at: str = ""
    onnx: ExportSummary | None = None
    version: str | None = None  # set when released
    build: str | None = None
    registry_version: str | None = None
    # What the model does (tasks/registry.py): a classifier's card names its labels, in the
    # order of its probabilities, and holds its test-split measures.
    task: str = "generation"
    labels: tuple[str, ...] = ()
    classification: ClassifierMeasures | None = None

    def write(self, model_dir: Path) -> Path:
        path = Path(model_dir) / CARD_NAME
        write_atomically(path, json.dumps(dataclasses.asdict(self), indent=2).encode())
        return path

    @classmethod
    def read(cls, model_dir: str | Path) -> "ModelCard":
        path = Path(model_dir) / CARD_NAME
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as error:
            raise UnreadableCardError(f"{path}: not a readable model card ({error})") from error

    @classmethod
    def from_dict(cls, data: dict) -> "ModelCard":
        values = _known(cls, data)
        values["vocab"] = tuple(data["vocab"])
        values["context_length"] = int(data["context_length"])
        values["labels"] = tuple(data.get("labels", ()))
        if data.get("classification") is not None:
            values["classification"] = ClassifierMeasures.from_dict(data["classification"])
        values["metrics"] = CardMetrics(**_known(CardMetrics, data.get("metrics", {})))
        if data.get("onnx") is not None:
            values["onnx"] = ExportSummary(
                **{"test_loss": None, **_known(ExportSummary, data["onnx"])}
            )
        return cls(**values)

    def reported_loss(self) -> tuple[str, float]:
        """The loss to show for this model and the split it is on: the test split's, or, on a
        card from before the three-way split, the validation loss it was selected by."""
        if self.onnx is not None and self.onnx.test_loss is not None:
            return "test", self.onnx.test_loss
        if self.metrics.test_loss is not None:
            return "test", self.metrics.test_loss
        return "validation", self.metrics.validation_loss

    def replace(self, **changes) -> "ModelCard":
        return dataclasses.replace(self, **changes)

    def with_files(self, hashes: dict[str, str | None]) -> "ModelCard":
        """The card with more file hashes, by file name; a None hash is left out."""
        return self.replace(files={**self.files, **{k: v for k, v in hashes.items() if v}})
