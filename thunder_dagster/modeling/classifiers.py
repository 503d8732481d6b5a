"""Text classifiers (the classification and sentiment tasks): a head on the sentence encoder's
vectors, searched by Optuna's TPE over seed 002's space (learning rate, width, layers, dropout,
activation), trained in Keras, and judged on a test split neither the search nor early
stopping saw: accuracy, macro F1, per-class precision and recall, the confusion matrix, and
the majority-class baseline a deployable classifier must beat.

The encoder stays frozen: the head learns from its vectors, which are computed once per text.
"""

import hashlib
import math
import time
from dataclasses import dataclass

import numpy as np

from thunder_dagster.modeling.space import ACTIVATIONS

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


@dataclass(frozen=True)
class ClassifierBudget:
    epochs: int = 60
    batch_size: int = 32
    patience: int = 6
    max_seconds: float | None = None


def declare(trial) -> dict:
    """Seed 002's space, for a head: learning rate, width, layers, dropout, activation."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 1e-2, log=True),
        "hidden_size": trial.suggest_int("hidden_size", 32, 256, step=32),
        "layers": trial.suggest_int("layers", 1, 4),
        "dropout": trial.suggest_float("dropout", 0.0, 0.5),
        "activation": trial.suggest_categorical("activation", list(ACTIVATIONS)),
    }


# A head known to learn on sentence vectors within seconds; the study runs it first.
KNOWN_GOOD_HEAD = {
    "learning_rate": 3e-3,
    "hidden_size": 128,
    "layers": 1,
    "dropout": 0.1,
    "activation": "gelu",
}


def dense_stack(x, params: dict):
    """The head's hidden layers: `layers` dense layers of `hidden_size`, each with dropout."""
    from thunder_dagster.modeling.architectures import AdjustableDropout, activation
    from thunder_dagster.modeling.backend import keras

    for number in range(params["layers"]):
        x = keras.layers.Dense(
            params["hidden_size"], activation=activation(params["activation"]), name=f"h{number}"
        )(x)
        x = AdjustableDropout(params["dropout"])(x)
    return x


def build_head(params: dict, dimensions: int, classes: int):
    from thunder_dagster.modeling.backend import keras

    inputs = keras.Input((dimensions,), name="embeddings")
    x = dense_stack(inputs, params)
    logits = keras.layers.Dense(classes, name="logits")(x)
    model = keras.Model(inputs, logits, name="classifier")
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=params["learning_rate"]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def fit_head(model, split: LabelledSplit, budget: ClassifierBudget, seed: int) -> list[dict]:
    """Train with early stopping on the validation loss; the best epoch's weights are kept.
    Returns one {"epoch", "train_loss", "validation_loss"} per epoch."""
    from thunder_dagster.modeling.backend import keras

    keras.utils.set_random_seed(seed)
    started = time.monotonic()

    class Deadline(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if budget.max_seconds is not None and time.monotonic() - started > budget.max_seconds:
                self.model.stop_training = True

    fitted = model.fit(
        split.train_x,
        split.train_y,
        validation_data=(split.validation_x, split.validation_y),
        epochs=budget.epochs,
        batch_size=budget.batch_size,
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(
                patience=budget.patience, restore_best_weights=True, monitor="val_loss"
            ),
            Deadline(),
        ],
    )
    losses = fitted.history
    return [
        {"epoch": n, "train_loss": float(a), "validation_loss": float(b)}
        for n, (a, b) in enumerate(zip(losses["loss"], losses["val_loss"], strict=True))
    ]


def probabilities(model, x: np.ndarray) -> np.ndarray:
    logits = np.asarray(model(x, training=False), np.float64)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


@dataclass(frozen=True)
class ClassifierMetrics:
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


@dataclass(frozen=True)
class ClassifierResult:
    params: dict
    trials: list[dict]  # per trial: number, params, validation loss, state
    epochs: list[dict]  # the final head's
    metrics: ClassifierMetrics


def search_head(
    split: LabelledSplit,
    trials: int,
    budget: ClassifierBudget,
    seed: int = 0,
    storage=None,
    study_name: str | None = None,
    deadline: float | None = None,
):
    """TPE over the head's space, judged by the validation loss; the known-good head first.
    Returns the study and the best trial's parameters."""
    import optuna

    from thunder_dagster.modeling.backend import keras

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(5, trials)),
        direction="minimize",
        load_if_exists=study_name is not None,
    )
    if not study.trials:
        study.enqueue_trial(KNOWN_GOOD_HEAD)

    def objective(trial) -> float:
        keras.backend.clear_session()
        params = declare(trial)
        model = build_head(params, split.dimensions, len(split.labels))
        epochs = fit_head(model, split, budget, seed + trial.number)
        return min(epoch["validation_loss"] for epoch in epochs)

    def left() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.monotonic())

    done = sum(1 for t in study.trials if t.state.is_finished())
    study.optimize(objective, n_trials=max(0, trials - done), timeout=left())
    return study, dict(study.best_trial.params)


def train_classifier(
    split: LabelledSplit,
    trials: int = 8,
    budget: ClassifierBudget | None = None,
    seed: int = 0,
    storage=None,
    study_name: str | None = None,
    deadline: float | None = None,
):
    """The searched head trained again from its best parameters, measured on the test split.
    Returns the Keras model and its ClassifierResult."""
    from thunder_dagster.modeling.backend import keras

    budget = budget or ClassifierBudget()
    study, params = search_head(split, trials, budget, seed, storage, study_name, deadline)
    keras.backend.clear_session()
    model = build_head(params, split.dimensions, len(split.labels))
    epochs = fit_head(model, split, budget, seed)
    predicted = probabilities(model, split.test_x).argmax(-1)
    majority = int(np.bincount(split.train_y, minlength=len(split.labels)).argmax())
    metrics = measure(split.labels, split.test_y, predicted, majority)
    records = [
        {
            "number": t.number,
            "params": t.params,
            "validation_loss": t.value if t.value is not None else math.nan,
            "state": t.state.name,
        }
        for t in study.trials
    ]
    return model, ClassifierResult(params, records, epochs, metrics)
