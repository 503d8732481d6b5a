"""One adaptation of an agent: Optuna's TPE searches the adapter's rank, alpha, learning rate,
steps and target projections inside the run's seconds, each trial trained on the training
examples and scored by its held-out loss; the best trial's adapter then passes the gates
before it may be released:

- finite: every matrix of the adapter and the logits it gives are finite;
- parity: the adapted ONNX graph, given the adapter as inputs, gives Keras' logits;
- not worse than the champion on the agent's held-out questions and held-out text (mean
  negative log-likelihood per learnt token; the champion is the bare base or its adapter).

Preferences (DPO) train after the supervised steps, within the same trial.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from thunder_dagster.adapters.examples import Example, Preference
from thunder_dagster.adapters.files import Adapter, graph_feeds
from thunder_dagster.adapters.keras_base import ATTENTION, AdapterShape, KerasBase
from thunder_dagster.adapters.training import AdapterBudget, AdapterTrainer, TrainingReport
from thunder_dagster.instruct.base import PROJECTIONS

# The search's choices of projections: attention only, or every projection of the block.
TARGETS = {"attention": ATTENTION, "all": PROJECTIONS}
PARITY_TOLERANCE = 1e-3  # logits, as the base's own parity holds its float candidates
CHECKED = 16  # the highest logits compared (the graph computes its 64 highest in float)
WORSE_BY = 1e-3  # nats per token: a held-out loss above the champion's by more is worse


@dataclass(frozen=True)
class HeldOut:
    questions: list[Example]  # answers to held-out questions
    text: list[Example]  # held-out windows of the documents


@dataclass(frozen=True)
class Trial:
    number: int
    params: dict
    held_out_loss: float
    report: TrainingReport


@dataclass(frozen=True)
class GateReport:
    finite: bool
    parity_error: float
    champion_loss: dict[str, float]
    adapted_loss: dict[str, float]

    @property
    def not_worse(self) -> bool:
        return all(
            math.isfinite(self.adapted_loss[part])
            and self.adapted_loss[part] <= self.champion_loss[part] + WORSE_BY
            for part in self.champion_loss
            if math.isfinite(self.champion_loss[part])
        )

    @property
    def passed(self) -> bool:
        return self.finite and self.parity_error <= PARITY_TOLERANCE and self.not_worse

    def reasons(self) -> list[str]:
        found = [] if self.finite else ["the adapter or its logits hold non-finite values"]
        if self.parity_error > PARITY_TOLERANCE:
            found.append(f"the graph's logits differ from Keras' by {self.parity_error:.2g}")
        for part, loss in self.adapted_loss.items():
            if not loss <= self.champion_loss[part] + WORSE_BY:
                found.append(
                    f"held-out {part}: loss {loss:.4f} against the champion's "
                    f"{self.champion_loss[part]:.4f}"
                )
        return found


@dataclass
class Adaptation:
    adapter: Adapter
    trials: list[Trial] = field(default_factory=list)

    @property
    def best(self) -> Trial:
        return min(self.trials, key=lambda trial: trial.held_out_loss)


def held_out_loss(trainer: AdapterTrainer, held: HeldOut) -> dict[str, float]:
    return {"questions": trainer.mean_loss(held.questions), "text": trainer.mean_loss(held.text)}


def search(
    weights,
    train: list[Example],
    preferences: list[Preference],
    held: HeldOut,
    seconds: float,
    trials: int,
    pad_id: int,
    seed: int = 0,
    positions: int = 1024,
    progress: Callable[[Trial], None] | None = None,
) -> Adaptation:
    """TPE over the adapter's settings within `seconds`; the best trial's adapter."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    deadline = time.monotonic() + seconds
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(3, trials)),
    )
    kept: dict[int, tuple[AdapterShape, dict]] = {}
    done: list[Trial] = []
    for _ in range(trials):
        left = deadline - time.monotonic()
        if left <= 0:
            break
        trial = study.ask()
        rank = trial.suggest_categorical("rank", [4, 8, 16])
        shape = AdapterShape(
            rank=rank,
            alpha=rank * trial.suggest_categorical("alpha_per_rank", [1.0, 2.0]),
            targets=TARGETS[trial.suggest_categorical("targets", sorted(TARGETS))],
        )
        rate = trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True)
        steps = trial.suggest_int("steps", 10, 200, log=True)
        model = KerasBase(weights, shape, positions)
        trainer = AdapterTrainer(model, rate, pad_id)
        share = left / max(trials - len(done), 1)
        report = trainer.fit(train, AdapterBudget(steps, share * 0.8), seed=seed)
        if preferences:
            trainer.fit_preferences(preferences, AdapterBudget(max(steps // 4, 1), share * 0.2))
        loss = trainer.mean_loss(held.questions or held.text)
        loss = loss if math.isfinite(loss) else float("inf")
        study.tell(trial, loss)
        result = Trial(trial.number, dict(trial.params), loss, report)
        done.append(result)
        if loss <= min(t.held_out_loss for t in done):  # the best so far: keep its matrices
            kept = {trial.number: (shape, model.adapter_arrays())}
        if progress is not None:
            progress(result)
    if not done:
        raise ValueError(f"no trial fitted in {seconds:g} s: give the adaptation more minutes")
    shape, arrays = kept[min(done, key=lambda t: t.held_out_loss).number]
    return Adaptation(Adapter(shape, arrays), done)


def gate(
    weights,
    adapter: Adapter,
    champion: Adapter | None,
    held: HeldOut,
    adapted_graph,
    pad_id: int,
    positions: int = 1024,
) -> GateReport:
    """The three checks, on the held-out examples and on the adapted graph (a BaseModel)."""
    finite = all(np.isfinite(a).all() and np.isfinite(b).all() for a, b in adapter.arrays.values())
    champion_model = KerasBase(weights, champion.shape if champion else None, positions)
    if champion is not None:
        champion_model.load_adapter_arrays(champion.arrays)
    champion_loss = held_out_loss(AdapterTrainer(champion_model, 1e-4, pad_id), held)
    model = KerasBase(weights, adapter.shape, positions)
    model.load_adapter_arrays(adapter.arrays)
    adapted_loss = held_out_loss(AdapterTrainer(model, 1e-4, pad_id), held)
    prompt = list((held.questions or held.text)[0].ids)
    expected = model.logits(model.hidden(np.asarray([prompt], np.int32))).numpy()[0, -1]
    served = adapted_graph.with_adapter(graph_feeds(adapter, weights.spec))
    got, _ = next(served.logits_along(prompt, 1))
    top = np.argsort(got)[::-1][:CHECKED]
    finite = finite and bool(np.isfinite(got).all())
    return GateReport(
        finite=finite,
        parity_error=float(np.abs(got[top] - expected[top]).max()),
        champion_loss=champion_loss,
        adapted_loss=adapted_loss,
    )
