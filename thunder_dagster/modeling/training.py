"""Training a language model on encoded text, epoch by epoch, within a budget of steps and time."""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    # Only for annotations: the budget and epoch records load without numpy, for the code
    # location, which every run imports.
    from thunder_dagster.modeling.text import EncodedText


@dataclass(frozen=True)
class Budget:
    """How long one training goes: epochs of `steps_per_epoch` batches, cut at `max_seconds`."""

    epochs: int
    steps_per_epoch: int = 100
    batch_size: int = 64
    max_seconds: float | None = None
    validation_windows: int = 256
    patience: int | None = None
    decay_to: float | None = None
    # When patience runs out with time left and the model fits its training text better than
    # its validation text (overfitting, not a plateau), its dropout rises by this much (up to
    # MAX_DROPOUT) and training goes on from the best weights: the budget buys regularised
    # epochs instead of ending unspent. None: patience stops the training.
    dropout_step: float | None = None


@dataclass(frozen=True)
class Epoch:
    number: int
    train_loss: float
    validation_loss: float
    seconds: float
    steps: int
    dropout: float | None = None  # the model's dropout during the epoch, when training set it


@dataclass
class History:
    epochs: list[Epoch] = field(default_factory=list)
    best_loss: float = math.inf

    @property
    def seconds(self) -> float:
        return sum(epoch.seconds for epoch in self.epochs)


MAX_DROPOUT = 0.3
MIN_STEPS_PER_EPOCH = 10
PASSES_PER_EPOCH = 2


def steps_per_epoch(budget: Budget, characters: int, context_length: int) -> int:
    """The budget's steps, but an epoch never covers the text more than about twice.

    On a small agent's few thousand characters, a hundred batches would be dozens of passes:
    the model overfits inside one epoch, before early stopping could keep its best weights.
    """
    one_pass = math.ceil(PASSES_PER_EPOCH * characters / (budget.batch_size * context_length))
    return max(1, min(budget.steps_per_epoch, max(MIN_STEPS_PER_EPOCH, one_pass)))


def dropout_rate(model) -> float | None:
    """The rate of the model's adjustable Dropout layers, None when it has none (a model saved
    before they existed)."""
    from thunder_dagster.modeling.architectures import AdjustableDropout

    rates = [layer.rate for layer in model.layers if isinstance(layer, AdjustableDropout)]
    return max(rates) if rates else None


def set_dropout(model, rate: float) -> None:
    """Every adjustable Dropout layer of the model at `rate`; the training step is traced
    again, since a rate is a constant of the traced graph. Dropout holds no weights."""
    from thunder_dagster.modeling.architectures import AdjustableDropout

    for layer in model.layers:
        if isinstance(layer, AdjustableDropout):
            layer.rate = rate
    model.make_train_function(force=True)


class NonFiniteLossError(ArithmeticError):
    """Training diverged: a loss became NaN or infinite."""


def validation_loss(
    model, data: "EncodedText", context_length: int, windows: int, batch_size: int
) -> float:
    return held_out_loss(model, data.validation, context_length, batch_size, windows)


# Test windows scored for a model's card: all of a test split up to this many (evenly thinned
# past it), so the reported loss is the held-out text's, not a sample's.
TEST_WINDOWS = 2048


def test_loss(model, data: "EncodedText", context_length: int, batch_size: int = 64) -> float:
    """Nats per character on the test split, which neither the search nor early stopping saw."""
    return held_out_loss(model, data.test, context_length, batch_size, TEST_WINDOWS)


def held_out_loss(model, ids, context_length: int, batch_size: int, windows: int | None) -> float:
    from thunder_dagster.modeling.text import sequential_windows

    x, y = sequential_windows(ids, context_length, limit=windows)
    return float(model.evaluate(x, y, batch_size=batch_size, verbose=0))


def _deadline_callback(keras, started: float, stop_at: float, base_rate, decay_to):
    """A Keras callback class that stops training after the batch in flight at `stop_at`, and
    with a `base_rate`, decays the learning rate over the wall-clock budget (cosine, down to
    `decay_to` of it)."""

    class StopAtDeadline(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            if base_rate is not None and math.isfinite(stop_at):
                progress = min(1.0, (time.monotonic() - started) / (stop_at - started))
                scale = decay_to + (1 - decay_to) * (1 + math.cos(math.pi * progress)) / 2
                self.model.optimizer.learning_rate.assign(base_rate * scale)

        def on_train_batch_end(self, batch, logs=None):
            if time.monotonic() >= stop_at:
                self.model.stop_training = True

    return StopAtDeadline


def train(
    model,
    data: "EncodedText",
    context_length: int,
    budget: Budget,
    seed: int,
    on_epoch: Callable[[Epoch], None] | None = None,
    deadline: float | None = None,
    restore_best: bool = False,
) -> History:
    """Fit on random windows of the training text; after each epoch, measure the validation loss.

    `on_epoch` sees every epoch as it ends (to log it, or to prune the trial by raising).
    Stops early at the budget's `max_seconds` or at `deadline` (a time.monotonic value), after
    the batch in flight, and always measures the validation loss of what it has; also after
    `patience` epochs without a better validation loss, unless the budget's `dropout_step`
    raises the dropout and goes on. With `restore_best`, the model ends with the weights of its
    best validation loss, counting the weights it started with.
    """
    import numpy as np

    from thunder_dagster.modeling.backend import keras
    from thunder_dagster.modeling.text import random_windows

    rng = np.random.default_rng(seed)
    started = time.monotonic()
    stop_at = min(
        started + (budget.max_seconds if budget.max_seconds is not None else math.inf),
        deadline if deadline is not None else math.inf,
    )

    base_rate = float(model.optimizer.learning_rate.numpy()) if budget.decay_to else None
    StopAtDeadline = _deadline_callback(keras, started, stop_at, base_rate, budget.decay_to)
    steps = steps_per_epoch(budget, len(data.train), context_length)
    history = History()
    best_loss, best_weights, since_best = math.inf, None, 0
    raised = None  # the dropout rate training set, once it has
    if restore_best:
        best_loss = validation_loss(
            model, data, context_length, budget.validation_windows, budget.batch_size
        )
        best_weights = model.get_weights()
    for number in range(budget.epochs):
        epoch_started = time.monotonic()
        x, y = random_windows(data.train, context_length, steps * budget.batch_size, rng)
        fitted = model.fit(
            x,
            y,
            batch_size=budget.batch_size,
            epochs=1,
            shuffle=False,
            verbose=0,
            callbacks=[StopAtDeadline()],
        )
        train_loss = float(fitted.history["loss"][-1])
        loss = validation_loss(
            model, data, context_length, budget.validation_windows, budget.batch_size
        )
        epoch = Epoch(number, train_loss, loss, time.monotonic() - epoch_started, steps, raised)
        history.epochs.append(epoch)
        if not (math.isfinite(loss) and math.isfinite(train_loss)):
            raise NonFiniteLossError(
                f"epoch {number}: train loss {train_loss}, validation loss {loss}"
            )
        if on_epoch is not None:
            on_epoch(epoch)
        if loss < best_loss:
            best_loss, since_best = loss, 0
            if restore_best:
                best_weights = model.get_weights()
        else:
            since_best += 1
        if time.monotonic() >= stop_at:
            break
        if budget.patience is not None and since_best >= budget.patience:
            rate = dropout_rate(model)
            mean_epoch = history.seconds / len(history.epochs)
            if (
                budget.dropout_step
                and restore_best
                and best_weights is not None
                and rate is not None
                and rate < MAX_DROPOUT
                and train_loss < best_loss
                and stop_at - time.monotonic() > mean_epoch
            ):
                raised = round(min(MAX_DROPOUT, rate + budget.dropout_step), 6)
                set_dropout(model, raised)
                model.set_weights(best_weights)
                since_best = 0
                continue
            break
    if restore_best and best_weights is not None:
        model.set_weights(best_weights)
    if base_rate is not None:
        model.optimizer.learning_rate.assign(base_rate)
    history.best_loss = best_loss
    return history
