"""Text classifiers (the classification and sentiment tasks): a head on the sentence encoder's
vectors, searched by Optuna's TPE over the head's space (learning rate, width, layers, dropout,
activation), trained in Keras, and judged on a test split neither the search nor early
stopping saw: accuracy, macro F1, per-class precision and recall, the confusion matrix, and
the majority-class baseline a deployable classifier must beat.

The encoder stays frozen: the head learns from its vectors, which are computed once per text.
Beside them, when the texts' token ids are given, a linear model over their TF-IDF features
(modeling/lexical.py) is fitted on its own first, as logistic regression would be. The head is
searched and trained on the vectors alone, and the two are mixed: the classifier's logits are
w x the linear model's + h x the head's, with the weights (w, h) from a fixed grid that give
the lowest validation loss; each head of the search is judged by its best mix. Both weights are
folded into the parts' last weights, so the saved and exported model is one sum. Every
training weighs each label's examples by the inverse of its frequency, as macro F1 counts
every label alike.
"""

import math
import time
from dataclasses import dataclass

import numpy as np

from thunder_dagster.modeling.cards import ClassifierMetrics
from thunder_dagster.modeling.evaluation import LabelledSplit, measure
from thunder_dagster.modeling.lexical import LexicalVocabulary, bags, fit_vocabulary
from thunder_dagster.modeling.space import ACTIVATIONS

LEXICAL_LEARNING_RATE = 0.03  # Adam on the sparse linear model: its rows see few updates
MIX_WEIGHTS = tuple(np.linspace(0.0, 2.0, 9).tolist())  # w and h each, (0, 0) left out


@dataclass(frozen=True)
class TokenizedTexts:
    """Every example's token ids (in the order split_labelled was given the texts) and what
    the lexical features need of the tokenizer."""

    ids: list[list[int]]
    vocab_size: int
    special_ids: tuple[int, ...]


@dataclass(frozen=True)
class LexicalInputs:
    """The TF-IDF vocabulary fitted on the training part, and each part's bags (ids, weights)."""

    vocabulary: LexicalVocabulary
    parts: tuple[tuple[np.ndarray, np.ndarray], ...]  # train, validation, test


def lexical_inputs(split: LabelledSplit, tokens: TokenizedTexts) -> LexicalInputs:
    if len(tokens.ids) != sum(len(rows) for rows in split.rows):
        raise ValueError(f"{len(tokens.ids)} token lists for a split of other texts")
    training = [tokens.ids[row] for row in split.rows[0]]
    vocabulary = fit_vocabulary(training, tokens.vocab_size, tokens.special_ids)
    parts = tuple(bags([tokens.ids[row] for row in rows], vocabulary) for rows in split.rows)
    return LexicalInputs(vocabulary, parts)


def inputs(split: LabelledSplit, lexical: LexicalInputs | None, part: int):
    """What a classifier built by build_head takes for part 0 (train), 1 or 2 (test): the
    vectors, or with a lexical part the list of the vectors, the bags' ids and weights."""
    vectors = (split.train_x, split.validation_x, split.test_x)[part]
    return vectors if lexical is None else [vectors, *lexical.parts[part]]


def balanced_weights(labels: np.ndarray, classes: int) -> np.ndarray:
    """Per example, n / (classes x its label's count): every label weighs the same in all."""
    counts = np.bincount(labels, minlength=classes).astype(np.float64)
    per_label = len(labels) / (classes * np.maximum(counts, 1))
    return per_label[labels].astype(np.float32)


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


def build_head(
    params: dict,
    dimensions: int,
    classes: int,
    vocabulary: LexicalVocabulary | None = None,
    table: np.ndarray | None = None,
):
    """The head on the sentence vectors; with a vocabulary, its logits plus a linear model's
    over the TF-IDF bags (LexicalLogits), whose `table` (fit_lexical's) stays as it is."""
    from thunder_dagster.modeling.backend import keras

    vectors = keras.Input((dimensions,), name="embeddings")
    x = dense_stack(vectors, params)
    logits = keras.layers.Dense(classes, name="logits")(x)
    taken = vectors
    if vocabulary is not None:
        ids = keras.Input((None,), dtype="int32", name="lexical_ids")
        weights = keras.Input((None,), name="lexical_weights")
        lexical = lexical_layer(vocabulary, classes)
        words = lexical(ids, weights)
        if table is not None:
            lexical.table.assign(table)
        lexical.trainable = False
        logits = keras.layers.Add(name="sum")([logits, words])
        taken = [vectors, ids, weights]
    model = keras.Model(taken, logits, name="classifier")
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=params["learning_rate"]),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return model


def lexical_layer(vocabulary: LexicalVocabulary, classes: int):
    from thunder_dagster.modeling.architectures import LexicalLogits

    return LexicalLogits(
        classes,
        vocabulary.vocab_size,
        vocabulary.pair_buckets,
        vocabulary.known,
        vocabulary,
        name="lexical",
    )


def fit_lexical(
    split: LabelledSplit, lexical: LexicalInputs, budget: ClassifierBudget, seed: int
) -> tuple[np.ndarray, list[dict]]:
    """The linear model over the TF-IDF bags alone, trained as fit_head trains a head.
    Returns its [features, labels] table and its epochs."""
    from thunder_dagster.modeling.backend import keras

    keras.backend.clear_session()
    vocabulary = lexical.vocabulary
    ids = keras.Input((None,), dtype="int32", name="lexical_ids")
    weights = keras.Input((None,), name="lexical_weights")
    layer = lexical_layer(vocabulary, len(split.labels))
    model = keras.Model([ids, weights], layer(ids, weights), name="lexical")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=LEXICAL_LEARNING_RATE),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    parts = (list(lexical.parts[0]), list(lexical.parts[1]))
    epochs = _fit(model, split, parts, budget, seed)
    return np.asarray(layer.table.numpy(), np.float32), epochs


def word_logits(lexical: LexicalInputs, table: np.ndarray) -> tuple[np.ndarray, ...]:
    """The linear model's logits for each part, as LexicalLogits computes them."""
    return tuple(
        np.einsum("bl,blc->bc", weights, table[ids]).astype(np.float64)
        for ids, weights in lexical.parts
    )


def cross_entropy(logits: np.ndarray, labels: np.ndarray) -> float:
    shifted = logits - logits.max(-1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return float(-np.mean(log_probabilities[np.arange(len(labels)), labels]))


def best_mix(words: np.ndarray, head: np.ndarray, labels: np.ndarray) -> tuple[float, float, float]:
    """(w, h, loss): the grid's weights of the two parts' logits with the lowest loss."""
    return min(
        (
            (w, h, cross_entropy(w * words + h * head, labels))
            for w in MIX_WEIGHTS
            for h in MIX_WEIGHTS
            if w or h
        ),
        key=lambda mixed: mixed[2],
    )


def mixed(head, params: dict, split: LabelledSplit, lexical: LexicalInputs, table, mix):
    """One model: the trained head's layers and the linear model, each scaled by its weight."""
    w, h, _ = mix
    model = build_head(params, split.dimensions, len(split.labels), lexical.vocabulary, w * table)
    for layer in head.layers:
        if layer.weights:
            weights = layer.get_weights()
            if layer.name == "logits":
                weights = [h * value for value in weights]
            model.get_layer(layer.name).set_weights(weights)
    # Its optimizer's state made now, as training would have, so the saved model loads whole.
    model.optimizer.build(model.trainable_variables)
    return model


def fit_head(model, split: LabelledSplit, budget: ClassifierBudget, seed: int) -> list[dict]:
    """Train with early stopping on the validation loss; the best epoch's weights are kept.
    Returns one {"epoch", "train_loss", "validation_loss"} per epoch."""
    return _fit(model, split, (split.train_x, split.validation_x), budget, seed)


def _fit(model, split: LabelledSplit, parts, budget: ClassifierBudget, seed: int) -> list[dict]:
    from thunder_dagster.modeling.backend import keras

    keras.utils.set_random_seed(seed)
    started = time.monotonic()

    class Deadline(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if budget.max_seconds is not None and time.monotonic() - started > budget.max_seconds:
                self.model.stop_training = True

    train, validation = parts
    fitted = model.fit(
        train,
        split.train_y,
        sample_weight=balanced_weights(split.train_y, len(split.labels)),
        validation_data=(validation, split.validation_y),
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


def probabilities(model, x) -> np.ndarray:
    """Softmax of the model's logits; `x` is what it takes (inputs' list, or the vectors)."""
    logits = np.asarray(model(x, training=False), np.float64)
    shifted = np.exp(logits - logits.max(-1, keepdims=True))
    return shifted / shifted.sum(-1, keepdims=True)


@dataclass(frozen=True)
class ClassifierResult:
    params: dict
    trials: list[dict]  # per trial: number, params, validation loss (of its best mix), state
    epochs: list[dict]  # the final head's
    metrics: ClassifierMetrics
    lexical: LexicalInputs | None = None
    lexical_epochs: list[dict] | None = None  # the linear model's, fitted before the search
    mix: tuple[float, float, float] | None = None  # w, h and the validation loss they give


def search_head(
    split: LabelledSplit,
    trials: int,
    budget: ClassifierBudget,
    seed: int = 0,
    storage=None,
    study_name: str | None = None,
    deadline: float | None = None,
    words: tuple[np.ndarray, ...] | None = None,
):
    """TPE over the head's space, judged by the validation loss; the known-good head first.
    With the linear model's logits (`words`), a head is judged by its best mix with them.
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
        if words is None:
            return min(epoch["validation_loss"] for epoch in epochs)
        head = np.asarray(model(split.validation_x, training=False), np.float64)
        return best_mix(words[1], head, split.validation_y)[2]

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
    tokens: TokenizedTexts | None = None,
):
    """The searched head trained again from its best parameters, measured on the test split;
    with `tokens`, beside the linear model over their TF-IDF features, fitted first.
    Returns the Keras model and its ClassifierResult."""
    from thunder_dagster.modeling.backend import keras

    budget = budget or ClassifierBudget()
    lexical = table = lexical_epochs = words = mix = None
    if tokens is not None:
        lexical = lexical_inputs(split, tokens)
        table, lexical_epochs = fit_lexical(split, lexical, budget, seed)
        words = word_logits(lexical, table)
    study, params = search_head(split, trials, budget, seed, storage, study_name, deadline, words)
    keras.backend.clear_session()
    model = build_head(params, split.dimensions, len(split.labels))
    epochs = fit_head(model, split, budget, seed)
    if lexical is not None:
        head = np.asarray(model(split.validation_x, training=False), np.float64)
        mix = best_mix(words[1], head, split.validation_y)
        model = mixed(model, params, split, lexical, table, mix)
    predicted = probabilities(model, inputs(split, lexical, 2)).argmax(-1)
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
    result = ClassifierResult(params, records, epochs, metrics, lexical, lexical_epochs, mix)
    return model, result
