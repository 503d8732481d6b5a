"""The reward model's core (seed 003): a head on the sentence encoder's vectors of a prompt and
an answer that predicts the score (1 to 5) a user would give the answer.

Human ratings and AI grades (the teacher grading with a fixed rubric) both train it, marked
apart and weighted apart: an AI grade counts `ai_weight` of a human one. It is judged on
held-out human ratings only, by Spearman's correlation between predicted and given scores and
by pairwise accuracy: of two held-out answers to the same prompt with different scores, how
often the one rated higher is predicted higher (all pairs, when no prompt has two).
"""

import hashlib
import math
import time
from dataclasses import dataclass

import numpy as np

from thunder_dagster.modeling.classifiers import KNOWN_GOOD_HEAD, declare, dense_stack

HELD_OUT_FRACTION = 0.2
HUMAN, AI = "human", "ai"
# A fixed rubric, so AI grades mean the same thing from one day to the next.
RUBRIC = (
    "Grade the answer to the prompt from 1 (useless) to 5 (excellent): 5 answers the prompt "
    "fully and correctly in the agent's voice; 4 answers it with small faults; 3 is partly "
    "relevant; 2 is mostly off the point; 1 is off the point or wrong. Reply with the digit only."
)


class RewardDataError(ValueError):
    """Rated answers a reward model cannot learn from: the message says what to add."""


@dataclass(frozen=True)
class RatedAnswer:
    prompt: str
    answer: str
    score: int  # 1..5
    source: str = HUMAN  # HUMAN or AI


def features(prompt_vectors: np.ndarray, answer_vectors: np.ndarray) -> np.ndarray:
    """Prompt, answer, and their elementwise product (how the answer relates to the prompt)."""
    return np.concatenate(
        [prompt_vectors, answer_vectors, prompt_vectors * answer_vectors], axis=1
    ).astype(np.float32)


def held_out(rated: RatedAnswer) -> bool:
    """Human ratings only, a fifth of them by a hash of prompt and answer."""
    if rated.source != HUMAN:
        return False
    digest = hashlib.sha256(f"{rated.prompt}\0{rated.answer}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < HELD_OUT_FRACTION


@dataclass(frozen=True)
class RewardMetrics:
    spearman: float
    pairwise_accuracy: float
    pairs: int
    held_out: int
    trained_on_human: int
    trained_on_ai: int


def pairwise_accuracy(prompts: list[str], truth: np.ndarray, predicted: np.ndarray):
    """(accuracy, pairs): pairs of the same prompt with different scores, or of all answers
    when no prompt has two."""
    groups: dict[str, list[int]] = {}
    for row, prompt in enumerate(prompts):
        groups.setdefault(prompt, []).append(row)
    sets = [rows for rows in groups.values() if len(rows) > 1] or [list(range(len(prompts)))]
    right = total = 0
    for rows in sets:
        for i, a in enumerate(rows):
            for b in rows[i + 1 :]:
                if truth[a] == truth[b]:
                    continue
                total += 1
                right += (predicted[a] - predicted[b]) * (truth[a] - truth[b]) > 0
    return (right / total if total else math.nan), total


def to_unit(scores: np.ndarray) -> np.ndarray:
    return (np.asarray(scores, np.float32) - 1.0) / 4.0


def to_score(unit: np.ndarray) -> np.ndarray:
    return 1.0 + 4.0 * np.asarray(unit, np.float32).reshape(-1)


def build_reward_head(params: dict, dimensions: int):
    from thunder_dagster.modeling.backend import keras

    inputs = keras.Input((dimensions,), name="features")
    x = dense_stack(inputs, params)
    # The score scaled to 0..1 (to_unit): a sigmoid covers the scale and never leaves it.
    unit = keras.layers.Dense(1, activation="sigmoid", name="unit_score")(x)
    model = keras.Model(inputs, unit, name="reward_model")
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate=params["learning_rate"]), loss="mse"
    )
    return model


def train_reward_model(
    rated: list[RatedAnswer],
    encode,
    trials: int = 6,
    ai_weight: float = 0.5,
    epochs: int = 80,
    seed: int = 0,
    deadline: float | None = None,
):
    """The searched reward head and its metrics on held-out human ratings. `encode` maps texts
    to unit vectors (the sentence encoder)."""
    import optuna
    from scipy.stats import spearmanr

    from thunder_dagster.modeling.backend import keras

    test = [r for r in rated if held_out(r)]
    train = [r for r in rated if not held_out(r)]
    if len(test) < 5 or len({r.score for r in test}) < 2 or len(train) < 10:
        raise RewardDataError(
            f"{len(rated)} rated answers ({len(test)} held out, with "
            f"{len({r.score for r in test})} distinct scores): a reward model needs at least "
            "10 to learn from and 5 human-rated ones of two or more scores to be judged on"
        )

    def matrix(rows: list[RatedAnswer]):
        x = features(encode([r.prompt for r in rows]), encode([r.answer for r in rows]))
        y = to_unit([r.score for r in rows])
        w = np.asarray([1.0 if r.source == HUMAN else ai_weight for r in rows], np.float32)
        return x, y, w

    x, y, w = matrix(train)
    test_x, test_y, _ = matrix(test)
    # The search's validation: every fifth training row, by position.
    chosen = np.arange(len(x)) % 5 == 0
    fit_x, fit_y, fit_w = x[~chosen], y[~chosen], w[~chosen]
    val_x, val_y = x[chosen], y[chosen]

    def fit(params: dict, trial_seed: int):
        keras.backend.clear_session()
        keras.utils.set_random_seed(trial_seed)
        model = build_reward_head(params, x.shape[1])
        fitted = model.fit(
            fit_x,
            fit_y,
            sample_weight=fit_w,
            validation_data=(val_x, val_y),
            epochs=epochs,
            batch_size=32,
            verbose=0,
            callbacks=[
                keras.callbacks.EarlyStopping(
                    patience=8, restore_best_weights=True, monitor="val_loss"
                )
            ],
        )
        return model, min(fitted.history["val_loss"])

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(4, trials)),
    )
    study.enqueue_trial(KNOWN_GOOD_HEAD)
    left = None if deadline is None else max(0.0, deadline - time.monotonic())
    study.optimize(
        lambda trial: fit(declare(trial), seed + trial.number)[1], n_trials=trials, timeout=left
    )
    params = dict(study.best_trial.params)
    model, _ = fit(params, seed)
    predicted = to_score(model(test_x, training=False))
    test_y = to_score(test_y)
    rho = spearmanr(predicted, test_y).statistic
    accuracy, pairs = pairwise_accuracy([r.prompt for r in test], test_y, predicted)
    metrics = RewardMetrics(
        spearman=float(rho) if np.isfinite(rho) else math.nan,
        pairwise_accuracy=float(accuracy),
        pairs=pairs,
        held_out=len(test),
        trained_on_human=sum(1 for r in train if r.source == HUMAN),
        trained_on_ai=sum(1 for r in train if r.source == AI),
    )
    return model, params, metrics


REWARD_CHECKS = ("parity", "finite_outputs", "better_than_chance")
PARITY_TOLERANCE = 1e-4  # on the 1-5 scale


@dataclass(frozen=True)
class RewardExport:
    onnx_path: str
    onnx_sha256: str
    max_abs_difference: float
    checks: list  # reports.Check

    @property
    def passed(self) -> bool:
        return all(check.passed for check in self.checks)


def export_reward_model(
    model, activation: str, probe: np.ndarray, metrics: RewardMetrics, path
) -> RewardExport:
    """The reward head as an ONNX graph (features -> score on the 1-5 scale) at `path`, held to
    three gates: parity with Keras on `probe` features, finite scores, and better than chance
    on held-out human ratings (Spearman's correlation above 0, pairwise accuracy above 0.5)."""
    import onnxruntime

    from thunder_dagster.files import sha256_of, write_atomically
    from thunder_dagster.modeling.heads import FEATURES, SCORE, head_graph
    from thunder_dagster.modeling.reports import Check

    write_atomically(path, head_graph(model, activation, SCORE, FEATURES).SerializeToString())
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (exported,) = session.run([SCORE], {FEATURES: probe.astype(np.float32)})
    expected = to_score(model(probe, training=False))
    difference = float(np.max(np.abs(exported.reshape(-1) - expected)))
    chance = math.isfinite(metrics.spearman) and metrics.spearman > 0
    chance = chance and math.isfinite(metrics.pairwise_accuracy) and metrics.pairwise_accuracy > 0.5
    checks = [
        Check(
            "parity",
            difference <= PARITY_TOLERANCE,
            f"the graph's scores within {PARITY_TOLERANCE:g} of Keras' on {len(probe)} answers",
            {"max_abs_difference": difference},
        ),
        Check(
            "finite_outputs",
            bool(np.all(np.isfinite(exported))),
            "every score the graph gave is finite",
            {"answers": len(probe)},
        ),
        Check(
            "better_than_chance",
            chance,
            "on held-out human ratings: Spearman's correlation above 0 and pairwise accuracy "
            "above 0.5",
            {
                "spearman": metrics.spearman,
                "pairwise_accuracy": metrics.pairwise_accuracy,
                "pairs": metrics.pairs,
            },
        ),
    ]
    return RewardExport(str(path), sha256_of(path), difference, checks)
