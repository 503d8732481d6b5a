"""Adapter training's mechanics on the base's first two blocks (the same code as the whole
base, traced in seconds instead of a minute): supervised steps lower the loss of what they
learn and leave the prompt's tokens unlearnt, preference steps raise the chosen answer over the
rejected one against the starting model, and the budget's seconds stop a run."""

import dataclasses

import numpy as np
import pytest

from thunder_dagster.adapters.examples import Lesson, answer_example, preference
from thunder_dagster.adapters.keras_base import AdapterShape, KerasBase
from thunder_dagster.adapters.training import AdapterBudget, AdapterTrainer, padded_batch
from thunder_dagster.instruct.base import BaseFile
from thunder_dagster.instruct.reference import float_weights
from thunder_dagster.instruct.tokens import BaseTokenizer

SHAPE = AdapterShape(rank=8, alpha=16.0, targets=("attn_q", "attn_v", "ffn_up"))
FACT = "The bakery on Mill Street opens at nine on Sundays and sells rye bread."
LESSON = Lesson("When does the bakery open on Sundays?", (FACT,), "At nine on Sundays.")


@pytest.fixture(scope="module")
def base():
    return BaseFile()


@pytest.fixture(scope="module")
def weights(base):
    whole = float_weights(base)
    return dataclasses.replace(whole, layers=whole.layers[:2])


@pytest.fixture(scope="module")
def tokenizer(base):
    return BaseTokenizer(base)


def test_a_padded_batch_learns_only_the_marked_tokens_and_pads_to_a_multiple_of_32():
    rows = [((5, 6, 7, 8), (False, False, True, True)), ((9, 10), (False, True))]
    inputs, targets, weights = padded_batch(rows, pad=2)
    assert inputs.shape == targets.shape == weights.shape == (2, 31)
    assert targets[0, :3].tolist() == [6, 7, 8] and weights[0, :4].tolist() == [0, 1, 1, 0]
    assert targets[1, 0] == 10 and weights[1].tolist() == [1] + [0] * 30


def test_supervised_steps_lower_the_loss_of_the_answer_they_learn(weights, tokenizer):
    example = answer_example(tokenizer, "acme", LESSON, "rated", 512)
    model = KerasBase(weights, SHAPE, positions=512)
    trainer = AdapterTrainer(model, learning_rate=3e-3, pad_id=tokenizer.end_id)
    before = trainer.mean_loss([example])
    report = trainer.fit([example], AdapterBudget(steps=25, max_seconds=120, batch_size=1))
    after = trainer.mean_loss([example])
    assert report.steps == 25 and report.stopped_by == "steps"
    assert report.tokens == 25 * len(example.ids) and report.tokens_per_second > 0
    assert after < before / 2, (before, after)


def test_preference_steps_raise_the_chosen_answer_over_the_rejected(weights, tokenizer):
    pair = preference(tokenizer, "acme", LESSON, "At nine on Sundays.", "It never opens.")
    model = KerasBase(weights, SHAPE, positions=512)
    trainer = AdapterTrainer(model, learning_rate=3e-3, pad_id=tokenizer.end_id)
    rows = padded_batch(
        [
            ((*pair.prompt, *answer), (False,) * len(pair.prompt) + (True,) * len(answer))
            for answer in (pair.chosen, pair.rejected)
        ],
        tokenizer.end_id,
    )
    chosen, rejected = trainer._logp(*rows).numpy()
    report = trainer.fit_preferences([pair], AdapterBudget(steps=15, max_seconds=120, batch_size=1))
    chosen_after, rejected_after = trainer._logp(*rows).numpy()
    assert report.steps == 15 and report.losses[-1] < report.losses[0]
    assert report.losses[0] == pytest.approx(
        np.log(2), abs=1e-3
    )  # the policy starts at the reference
    assert (chosen_after - rejected_after) - (chosen - rejected) > 1.0


def test_the_budgets_seconds_stop_a_run(weights, tokenizer):
    example = answer_example(tokenizer, "acme", LESSON, "rated", 512)
    trainer = AdapterTrainer(KerasBase(weights, SHAPE, positions=512), 1e-3, tokenizer.end_id)
    report = trainer.fit([example], AdapterBudget(steps=10_000, max_seconds=0.0, batch_size=1))
    assert report.steps == 1 and report.stopped_by == "time"
