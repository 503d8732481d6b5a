"""Training an adapter: supervised steps on examples (the loss on their learnt tokens only) and
direct preference optimisation on pairs, within a budget of steps and seconds; and the mean
loss of held-out examples, which the gate compares between an adapter and the champion.

Each step function is traced once per process for any batch shape (about a minute for the
whole base on two cores); a step of 512 tokens then takes about two seconds there.
"""

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from thunder_dagster.adapters.examples import Example, Preference

PAD_TO = 32  # batch lengths are rounded up to this, so few distinct shapes run
DPO_BETA = 0.1


@dataclass(frozen=True)
class AdapterBudget:
    steps: int
    max_seconds: float
    batch_size: int = 4
    learning_rate: float = 1e-4


@dataclass(frozen=True)
class TrainingReport:
    steps: int
    tokens: int  # every token the steps ran forward and backward
    seconds: float
    stopped_by: str  # "steps" or "time"
    losses: list[float] = field(default_factory=list)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else 0.0


def padded_batch(rows: list[tuple[tuple[int, ...], tuple[bool, ...]]], pad: int):
    """(inputs, targets, weights) int32/int32/float32 [batch, length - 1] from (ids, learned),
    right-padded (causal attention: padding after a row changes none of its positions)."""
    length = -(-max(len(ids) for ids, _ in rows) // PAD_TO) * PAD_TO
    ids = np.full((len(rows), length), pad, np.int32)
    weights = np.zeros((len(rows), length), np.float32)
    for row, (tokens, learned) in enumerate(rows):
        ids[row, : len(tokens)] = tokens
        weights[row, : len(tokens)] = learned
    return ids[:, :-1], ids[:, 1:], weights[:, 1:]


def _signature():
    from thunder_dagster.modeling.backend import tensorflow as tf

    return [
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, None], tf.int32),
        tf.TensorSpec([None, None], tf.float32),
    ]


class AdapterTrainer:
    """Steps of one model's adapter with AdamW (only the adapter's matrices change)."""

    def __init__(self, model, learning_rate: float, pad_id: int):
        from thunder_dagster.modeling.backend import keras
        from thunder_dagster.modeling.backend import tensorflow as tf

        self.model, self.pad_id = model, pad_id
        self.optimizer = keras.optimizers.AdamW(learning_rate, weight_decay=0.0)
        signature = _signature()
        self._sft = tf.function(self._sft_step, input_signature=signature, autograph=False)
        self._logp = tf.function(self._sequence_logp, input_signature=signature, autograph=False)
        dpo = [*signature, tf.TensorSpec([None], tf.float32)]
        self._dpo = tf.function(self._dpo_step, input_signature=dpo, autograph=False)

    def _target_logp(self, inputs, targets, weights):
        """log p of each learnt target, and the row it belongs to (logits only where learnt:
        the tied output projection over 49,152 tokens is a fifth of the model's work)."""
        from thunder_dagster.modeling.backend import tensorflow as tf

        hidden = self.model.hidden(inputs)
        where = tf.where(weights > 0)
        logits = self.model.logits(tf.gather_nd(hidden, where))
        chosen = tf.gather_nd(targets, where)
        logp = -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=chosen, logits=logits)
        return logp, where[:, 0]

    def _sft_step(self, inputs, targets, weights):
        from thunder_dagster.modeling.backend import tensorflow as tf

        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logp, _ = self._target_logp(inputs, targets, weights)
            loss = -tf.reduce_mean(logp)
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    def _sequence_logp(self, inputs, targets, weights):
        from thunder_dagster.modeling.backend import tensorflow as tf

        logp, rows = self._target_logp(inputs, targets, weights)
        return tf.math.unsorted_segment_sum(logp, rows, tf.shape(inputs)[0])

    def _dpo_step(self, inputs, targets, weights, reference):
        """Rows 2i and 2i+1 are a pair's chosen and rejected answers; `reference` their
        log-probabilities before training (the champion's)."""
        from thunder_dagster.modeling.backend import tensorflow as tf

        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            policy = self._sequence_logp(inputs, targets, weights) - reference
            margin = policy[0::2] - policy[1::2]
            loss = -tf.reduce_mean(tf.math.log_sigmoid(DPO_BETA * margin))
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    def batches(self, rows: list, size: int, rng) -> Iterator:
        while True:
            order = rng.permutation(len(rows))
            for start in range(0, len(order), size):
                yield [rows[i] for i in order[start : start + size]]

    def fit(
        self,
        examples: list[Example],
        budget,
        seed: int = 0,
        progress: Callable[[int, float], None] | None = None,
    ) -> TrainingReport:
        rows = [(e.ids, e.learned) for e in examples if e.targets]
        return self._loop(rows, budget, seed, progress, self._sft_rows)

    def _sft_rows(self, batch):
        return self._sft(*padded_batch(batch, self.pad_id)), sum(len(ids) for ids, _ in batch)

    def fit_preferences(
        self, pairs: list[Preference], budget, seed: int = 0, progress=None
    ) -> TrainingReport:
        rows = [_pair_rows(pair) for pair in pairs]
        # Each pair's log-probabilities under the starting model, the reference DPO measures from.
        reference = [
            self._logp(*padded_batch(pair_rows, self.pad_id)).numpy() for pair_rows in rows
        ]
        indexed = list(enumerate(rows))

        def step(batch):
            flat = [row for _, pair_rows in batch for row in pair_rows]
            known = np.concatenate([reference[index] for index, _ in batch]).astype(np.float32)
            loss = self._dpo(*padded_batch(flat, self.pad_id), known)
            return loss, sum(len(ids) for ids, _ in flat)

        return self._loop(indexed, budget, seed, progress, step)

    def _loop(self, rows, budget, seed, progress, step) -> TrainingReport:
        if not rows:
            return TrainingReport(0, 0, 0.0, "steps")
        rng = np.random.default_rng(seed)
        started, tokens, losses, stopped = time.perf_counter(), 0, [], "steps"
        for number, batch in zip(
            range(budget.steps), self.batches(rows, budget.batch_size, rng), strict=False
        ):
            loss, used = step(batch)
            losses.append(float(loss))
            tokens += used
            if progress is not None:
                progress(number + 1, losses[-1])
            if time.perf_counter() - started > budget.max_seconds:
                stopped = "time"
                break
        return TrainingReport(len(losses), tokens, time.perf_counter() - started, stopped, losses)

    def mean_loss(self, examples: list[Example], batch_size: int = 4) -> float:
        """The mean negative log-likelihood of the examples' learnt tokens (nats per token)."""
        total, count = 0.0, 0
        rows = [(e.ids, e.learned) for e in examples if e.targets]
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            sums = self._logp(*padded_batch(batch, self.pad_id)).numpy()
            total -= float(sums.sum())
            count += sum(sum(learned[1:]) for _, learned in batch)
        return total / count if count else math.nan


def _pair_rows(pair: Preference) -> list:
    prompt = pair.prompt
    return [
        ((*prompt, *answer), (False,) * len(prompt) + (True,) * len(answer))
        for answer in (pair.chosen, pair.rejected)
    ]
