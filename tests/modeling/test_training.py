"""The training loop itself, on a tiny GRU: divergence, the deadline, the best epoch and
patience, each observed on a real Keras model."""

import math
import time
from dataclasses import replace

import numpy as np
import pytest

from tests.factories import PHRASES
from thunder_dagster.modeling.architectures import build_language_model, compile_model
from thunder_dagster.modeling.backend import keras
from thunder_dagster.modeling.text import EncodedText, Vocabulary, encode_documents
from thunder_dagster.modeling.training import (
    Budget,
    NonFiniteLossError,
    dropout_rate,
    steps_per_epoch,
    train,
    validation_loss,
)

CONTEXT = 16
BUDGET = Budget(epochs=2, steps_per_epoch=20, batch_size=16, validation_windows=32)


def test_an_epoch_never_covers_a_small_text_more_than_about_twice():
    budget = Budget(epochs=1, steps_per_epoch=100, batch_size=128)
    assert steps_per_epoch(budget, 1_000_000, 64) == 100
    assert steps_per_epoch(budget, 100_000, 64) == 25
    assert steps_per_epoch(budget, 16_000, 64) == 10
    assert steps_per_epoch(Budget(epochs=1, steps_per_epoch=3), 16_000, 64) == 3


@pytest.fixture(scope="module")
def data():
    return encode_documents(["".join(PHRASES) * 60])


def tiny(data, learning_rate=1e-2, seed=0):
    keras.utils.set_random_seed(seed)
    params = {
        "family": "gru",
        "context_length": CONTEXT,
        "learning_rate": learning_rate,
        "hidden_size": 32,
        "layers": 1,
        "dropout": 0.0,
        "activation": "gelu",
    }
    return compile_model(build_language_model(params, data.vocab_size), learning_rate)


@pytest.fixture(scope="module")
def trained(data):
    """A tiny model that has learned something, and its validation loss."""
    model = tiny(data)
    train(model, data, CONTEXT, BUDGET, seed=0)
    return model, validation_loss(model, data, CONTEXT, 32, 16)


def test_a_loss_that_turns_nan_stops_the_training(data):
    model = tiny(data)
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=1e30),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    seen = []
    with pytest.raises(NonFiniteLossError, match="epoch 0"):
        train(model, data, CONTEXT, BUDGET, seed=0, on_epoch=seen.append)
    assert seen == []  # a diverged epoch is never reported as a result


def test_a_passed_deadline_cuts_the_epoch_after_one_batch_and_still_measures_it(data):
    model = tiny(data)
    budget = Budget(epochs=5, steps_per_epoch=50, batch_size=16, validation_windows=32)
    history = train(model, data, CONTEXT, budget, seed=0, deadline=time.monotonic())
    assert int(model.optimizer.iterations.numpy()) == 1
    assert len(history.epochs) == 1 and math.isfinite(history.epochs[0].validation_loss)


def test_the_best_weights_are_restored_and_patience_stops_a_run_that_only_gets_worse(data, trained):
    model, loss = trained
    before = [weights.copy() for weights in model.get_weights()]
    # A rate this large wrecks what the model learned: every epoch is worse than its start.
    model.optimizer.learning_rate.assign(0.5)
    budget = Budget(epochs=10, steps_per_epoch=20, batch_size=16, validation_windows=32, patience=2)
    history = train(model, data, CONTEXT, budget, seed=1, restore_best=True)
    assert len(history.epochs) == 2  # patience 2: two epochs without improving, then stop
    assert all(epoch.validation_loss > loss for epoch in history.epochs)
    assert history.best_loss == pytest.approx(loss, rel=1e-5)
    for restored, original in zip(model.get_weights(), before, strict=True):
        np.testing.assert_array_equal(restored, original)


def test_an_overfitting_model_gets_more_dropout_instead_of_an_early_end():
    # Training text the model can learn by heart and validation text it never sees the like
    # of: it soon fits the first far better than the second, and patience would end it.
    train_text = "".join(PHRASES) * 60
    held_out = "".join(reversed(train_text))[:600]
    vocabulary = Vocabulary.from_text(train_text)
    overfitting = EncodedText(
        vocabulary,
        vocabulary.encode(train_text),
        vocabulary.encode(held_out),
        vocabulary.encode(held_out),
    )
    budget = Budget(
        epochs=8,
        steps_per_epoch=20,
        batch_size=16,
        validation_windows=32,
        patience=1,
        dropout_step=0.1,
    )
    model = tiny(overfitting, learning_rate=3e-2)
    history = train(model, overfitting, CONTEXT, budget, seed=0, restore_best=True)
    raised = [epoch.dropout for epoch in history.epochs if epoch.dropout is not None]
    assert raised and raised == sorted(raised) and max(raised) <= 0.3
    assert dropout_rate(model) == max(raised)
    # Without the step, the same stall ends the training.
    plain = tiny(overfitting, learning_rate=3e-2)
    unraised = replace(budget, dropout_step=None)
    stopped = train(plain, overfitting, CONTEXT, unraised, seed=0, restore_best=True)
    assert len(stopped.epochs) < len(history.epochs) and dropout_rate(plain) == 0.0
