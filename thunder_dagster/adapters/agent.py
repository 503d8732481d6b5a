"""One agent's adaptation, from its material to a released adapter, without Dagster: the asset
(assets/adaptation.py) hands it the base, the query log and the teacher, and reports what it
returns. The steps:

1. the material (material.py): the teacher asked about chunks it has not seen (its lessons
   kept in the agent's question bank), the rated and taught answers read from the log;
2. the search (adapt.search): TPE trials within the seconds, the best adapter kept;
3. the gates (adapt.gate) against the agent's champion adapter, or the bare base;
4. the release (releases.py): the champion's pointer for a first adapter, the challenger's for
   a later one. An adapter the gates refuse is not written.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from thunder_dagster.adapters.adapt import Adaptation, GateReport, Trial, gate, search
from thunder_dagster.adapters.examples import QuestionBank
from thunder_dagster.adapters.files import Adapter, AdapterFileError
from thunder_dagster.adapters.material import Material, gather
from thunder_dagster.adapters.releases import AdapterCard, adapter_dir, release_adapter
from thunder_dagster.deployments.pointers import read_pointer
from thunder_dagster.deployments.releases import Move

QUESTION_BANK = "adapter_questions.jsonl"
TEACHER_CONFIDENCE = 0.8  # the distillation rule's: the teacher's answers it learns from


@dataclass(frozen=True)
class AdaptationBudget:
    seconds: float  # the search's, training and held-out scoring of every trial
    trials: int
    teacher_questions: int  # chunks the teacher is asked about in one run, at most
    answers: int  # rated and taught answers read from the log, at most, of each


@dataclass(frozen=True)
class LoadedBase:
    """What an adaptation needs of the instruct base: its float weights for Keras, the graph
    that takes an adapter as inputs (a BaseModel) for the parity gate, and its identity."""

    weights: object  # instruct.reference.FloatWeights
    graph: object  # instruct.decoding.BaseModel of the adapted graph
    positions: int
    sha256: str

    @property
    def tokenizer(self):
        return self.graph.tokenizer


def champion_adapter(
    deployments_dir: Path, spec, warn: Callable[[str], None]
) -> tuple[str, Adapter | None]:
    """(what the new adapter is compared with, the champion adapter or None for the base)."""
    deployment = read_pointer(adapter_dir(deployments_dir))
    if deployment is None:
        return "the bare base", None
    try:
        return deployment.version, Adapter.load(Path(deployment.model_dir), spec)
    except AdapterFileError as error:
        warn(f"champion adapter {deployment.version} unreadable ({error}): compared with the base")
        return "the bare base", None


def material_for(
    agent_id: str,
    base: LoadedBase,
    chunks: dict[str, str],
    store,
    teacher,
    budget: AdaptationBudget,
    bank_path: Path,
) -> tuple[Material, int]:
    """The agent's material and how many chunks the teacher was asked about."""
    bank = QuestionBank(bank_path)
    if teacher is not None:
        questions, asked = bank.fill(teacher, chunks, budget.teacher_questions)
    else:
        questions, asked = {k: v for k, v in bank.load().items() if k in chunks}, 0
    material = gather(
        base.tokenizer,
        agent_id,
        chunks,
        questions,
        store.fine_tune_examples(agent_id, budget.answers),
        store.distillation_examples(agent_id, TEACHER_CONFIDENCE, budget.answers),
        store.rated_answers(agent_id, budget.answers),
        base.positions,
    )
    return material, asked


def measured(losses: dict[str, float]) -> dict[str, float]:
    """The held-out parts there were examples of (an agent without rated or taught answers has
    no held-out questions: its loss there is NaN, left out)."""
    return {part: loss for part, loss in losses.items() if math.isfinite(loss)}


def adapt_agent(
    agent_id: str,
    base: LoadedBase,
    material: Material,
    deployments_dir: Path,
    budget: AdaptationBudget,
    warn: Callable[[str], None],
    progress: Callable[[Trial], None] | None = None,
    seed: int = 0,
) -> tuple[Adaptation, GateReport, Move | None, str]:
    """Search, gate and release; (the search, the gates' report, the release or None, what
    the adapter was compared with)."""
    pad = base.tokenizer.end_id
    adaptation = search(
        base.weights,
        material.train,
        material.preferences,
        material.held,
        budget.seconds,
        budget.trials,
        pad,
        seed=seed,
        positions=base.positions,
        progress=progress,
    )
    compared_with, champion = champion_adapter(deployments_dir, base.graph.spec, warn)
    report = gate(
        base.weights, adaptation.adapter, champion, material.held, base.graph, pad, base.positions
    )
    if not report.passed:
        return adaptation, report, None, compared_with
    card = AdapterCard(
        base_sha256=base.sha256,
        params=adaptation.best.params,
        held_out_loss=measured(report.adapted_loss),
        champion_loss=measured(report.champion_loss),
        parity_error=report.parity_error,
        examples=material.counts,
    )
    move = release_adapter(deployments_dir, agent_id, adaptation.adapter, card)
    return adaptation, report, move, compared_with


def load_base_for_adaptation(bases_dir: Path, threads: int | None = None) -> LoadedBase:
    """The pinned base's float weights and its adapted graph (built and checked first when
    absent)."""
    from thunder_dagster.instruct import builds
    from thunder_dagster.instruct.base import BaseFile
    from thunder_dagster.instruct.reference import float_weights

    loaded = builds.load_base(bases_dir, threads)
    graph = builds.load_adapted(bases_dir, loaded, threads)
    card = loaded[1]
    return LoadedBase(float_weights(BaseFile()), graph, card.positions, card.provenance.sha256)
