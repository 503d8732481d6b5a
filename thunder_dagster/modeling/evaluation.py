"""How a classifier is judged: labelled texts split three ways by a hash of each text within
its label (train, validation for the search and early stopping, test for nothing else), and
the measures on the test part: accuracy, macro F1, per-label precision, recall and F1, the
confusion matrix, and the same for always answering the majority label."""

import hashlib
from dataclasses import dataclass

import numpy as np

from thunder_dagster.modeling.cards import ClassifierMetrics

TEST_FRACTION = 0.15
VALIDATION_FRACTION = 0.15
MIN_PER_CLASS = 2  # a label with fewer examples cannot be both trained on and tested


class LabelledDataError(ValueError):
    """Labelled data a classifier cannot learn from: the message says what to add."""


@dataclass(frozen=True)
class LabelledSplit:
    """Vectors and label indices, three ways; `labels` names the indices."""

    labels: tuple[str, ...]
    train_x: np.ndarray
    train_y: np.ndarray
    validation_x: np.ndarray
    validation_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    # Which of the given examples each part holds, in its order.
    rows: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] = ((), (), ())

    @property
    def dimensions(self) -> int:
        return int(self.train_x.shape[1])


def _bucket(text: str) -> float:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_labelled(texts: list[str], labels: list[str], vectors: np.ndarray) -> LabelledSplit:
    """Each example goes to test, validation or training by a hash of its text, within its
    label (so every label is in every split it can be, and the same text always lands in the
    same split, whatever else was uploaded)."""
    if len(texts) != len(labels) or len(texts) != len(vectors):
        raise ValueError(f"{len(texts)} texts, {len(labels)} labels, {len(vectors)} vectors")
    names = tuple(sorted(set(labels)))
    if len(names) < 2:
        raise LabelledDataError(
            f"the labelled data has {len(names)} label(s) ({', '.join(names) or 'none'}): a "
            "classifier needs examples of at least two labels"
        )
    index = {name: number for number, name in enumerate(names)}
    parts: dict[str, list[int]] = {"train": [], "validation": [], "test": []}
    for name in names:
        rows = sorted(
            (row for row, label in enumerate(labels) if label == name),
            key=lambda row: _bucket(texts[row]),
        )
        if len(rows) < MIN_PER_CLASS:
            raise LabelledDataError(
                f"label {name!r} has {len(rows)} example(s); give each label at least "
                f"{MIN_PER_CLASS} (better dozens)"
            )
        tests = max(1, round(len(rows) * TEST_FRACTION))
        validations = round(len(rows) * VALIDATION_FRACTION) if len(rows) - tests > 2 else 0
        parts["test"] += rows[:tests]
        parts["validation"] += rows[tests : tests + validations]
        parts["train"] += rows[tests + validations :]
    if not parts["validation"]:  # tiny sets: validate on the training rows rather than none
        parts["validation"] = list(parts["train"])

    def take(name: str):
        rows = sorted(parts[name])
        return (
            np.asarray(vectors[rows], np.float32),
            np.asarray([index[labels[row]] for row in rows], np.int64),
        )

    order = tuple(tuple(sorted(parts[name])) for name in ("train", "validation", "test"))
    return LabelledSplit(names, *take("train"), *take("validation"), *take("test"), order)


def split_rows(texts: list[str], labels: list[str]) -> tuple[tuple[int, ...], ...]:
    """Which rows of labelled texts the classifier's training puts in its training,
    validation and test parts (`split_labelled`'s rule, without the vectors)."""
    return split_labelled(texts, labels, np.zeros((len(texts), 1), np.float32)).rows


def measure(
    labels: tuple[str, ...], truth: np.ndarray, predicted: np.ndarray, majority: int
) -> ClassifierMetrics:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score
    from sklearn.metrics import precision_recall_fscore_support as prfs

    every = list(range(len(labels)))
    precision, recall, f1, support = prfs(
        truth, predicted, labels=every, average=None, zero_division=0
    )
    baseline = np.full_like(truth, majority)
    return ClassifierMetrics(
        labels=labels,
        accuracy=float(accuracy_score(truth, predicted)),
        macro_f1=float(f1_score(truth, predicted, labels=every, average="macro", zero_division=0)),
        precision=tuple(float(v) for v in precision),
        recall=tuple(float(v) for v in recall),
        f1=tuple(float(v) for v in f1),
        support=tuple(int(v) for v in support),
        confusion=tuple(
            tuple(int(v) for v in row) for row in confusion_matrix(truth, predicted, labels=every)
        ),
        majority_label=labels[majority],
        majority_accuracy=float(accuracy_score(truth, baseline)),
        majority_macro_f1=float(
            f1_score(truth, baseline, labels=every, average="macro", zero_division=0)
        ),
    )
