"""An adaptation end to end on the base's first two blocks (the Keras model and the ONNX graph
both built from them, so the gate's parity is a real comparison): TPE trials within the
budget, the best adapter not worse than the bare base on held-out questions and text, and an
adapter that is worse, or not finite, refused with its reasons."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from thunder_dagster.adapters.adapt import HeldOut, gate, search
from thunder_dagster.adapters.examples import Lesson, answer_example, preference, text_examples
from thunder_dagster.adapters.files import Adapter
from thunder_dagster.instruct.base import BaseFile
from thunder_dagster.instruct.builds import session_for
from thunder_dagster.instruct.decoding import BaseModel
from thunder_dagster.instruct.graphs import build_graph
from thunder_dagster.instruct.reference import float_weights
from thunder_dagster.instruct.tokens import BaseTokenizer

POSITIONS = 512
FACTS = [
    "The bakery on Mill Street opens at nine on Sundays.",
    "The rye loaves bake for fifty minutes at two hundred and thirty degrees.",
    "The shelter collects the unsold bread at half past seven.",
    "Croissants bake at one hundred and ninety degrees.",
]
QUESTIONS = [
    ("When does the bakery open on Sundays?", "At nine on Sundays."),
    ("How long do the rye loaves bake?", "For fifty minutes."),
    ("When is the unsold bread collected?", "At half past seven."),
    ("At what temperature do croissants bake?", "At one hundred and ninety degrees."),
]


@pytest.fixture(scope="module")
def two_blocks():
    """The pinned base cut to its first two blocks, for the graph and the weights alike."""
    base = BaseFile()
    base.__dict__["spec"] = dataclasses.replace(base.spec, layers=2)
    return base


@pytest.fixture(scope="module")
def setting(two_blocks):
    tokenizer = BaseTokenizer(two_blocks)
    lessons = [Lesson(q, (" ".join(FACTS),), a) for q, a in QUESTIONS]
    examples = [
        answer_example(tokenizer, "acme", lesson, "teacher", POSITIONS) for lesson in lessons
    ]
    held = HeldOut(questions=examples[:2], text=text_examples(tokenizer, FACTS[:2], 64))
    graph = build_graph(two_blocks, positions=POSITIONS, adapted=True).SerializeToString()
    served = BaseModel(session_for(graph), tokenizer, two_blocks.spec, POSITIONS)
    return tokenizer, float_weights(two_blocks), examples, lessons, held, served


@pytest.fixture(scope="module")
def adaptation(setting):
    tokenizer, weights, examples, lessons, held, _ = setting
    pairs = [preference(tokenizer, "acme", lessons[0], "At nine.", "At midnight.")]
    seen = []
    found = search(
        weights,
        examples,
        pairs,
        held,
        seconds=60,
        trials=2,
        pad_id=tokenizer.end_id,
        positions=POSITIONS,
        progress=seen.append,
    )
    return found, seen


def test_the_search_runs_its_trials_and_its_adapter_passes_the_gates(setting, adaptation):
    tokenizer, weights, _, _, held, served = setting
    found, seen = adaptation
    assert [trial.number for trial in found.trials] == [0, 1] == [t.number for t in seen]
    assert found.best.held_out_loss == min(t.held_out_loss for t in found.trials)
    assert {"rank", "alpha_per_rank", "targets", "learning_rate", "steps"} <= set(found.best.params)
    report = gate(weights, found.adapter, None, held, served, tokenizer.end_id, POSITIONS)
    assert report.passed, report.reasons()
    assert report.adapted_loss["questions"] < report.champion_loss["questions"]


def test_a_worse_or_non_finite_adapter_is_refused_with_its_reasons(setting, adaptation):
    tokenizer, weights, _, _, held, served = setting
    champion = adaptation[0].adapter
    rng = np.random.default_rng(0)
    noisy = {
        key: (a, rng.normal(0, 1.0, b.shape).astype(np.float32))
        for key, (a, b) in champion.arrays.items()
    }
    worse = gate(
        weights, Adapter(champion.shape, noisy), champion, held, served, tokenizer.end_id, POSITIONS
    )
    assert not worse.passed and any("held-out questions" in r for r in worse.reasons())
    broken = dict(champion.arrays)
    key = next(iter(broken))
    broken[key] = (broken[key][0], np.full_like(broken[key][1], np.nan))
    report = gate(
        weights, Adapter(champion.shape, broken), None, held, served, tokenizer.end_id, POSITIONS
    )
    assert not report.passed and "non-finite" in report.reasons()[0]


def test_an_agents_adaptation_searches_gates_and_releases_its_first_adapter_as_champion(
    setting, tmp_path
):
    from thunder_dagster.adapters.agent import AdaptationBudget, LoadedBase, adapt_agent
    from thunder_dagster.adapters.material import Material
    from thunder_dagster.adapters.releases import GATES_NAME, adapter_dir
    from thunder_dagster.deployments.pointers import read_pointer

    _, weights, examples, _, held, served = setting
    material = Material(examples, [], held, {"teacher": len(examples)})
    base = LoadedBase(weights, served, POSITIONS, "f" * 64)
    warnings = []
    adaptation, report, move, compared = adapt_agent(
        "acme",
        base,
        material,
        tmp_path / "acme",
        AdaptationBudget(seconds=25, trials=1, teacher_questions=0, answers=0),
        warnings.append,
    )
    assert report.passed, report.reasons()
    assert compared == "the bare base" and warnings == []
    assert (move.role, move.deployment.version) == ("champion", "adapter-1")
    pointer = read_pointer(adapter_dir(tmp_path / "acme"))
    assert pointer.onnx_sha256 == move.deployment.onnx_sha256
    loaded = Adapter.load(Path(pointer.model_dir), served.spec)
    for key, matrices in adaptation.adapter.arrays.items():
        for stored, found in zip(loaded.arrays[key], matrices, strict=True):
            np.testing.assert_array_equal(stored, found)
    gates = json.loads((Path(pointer.model_dir) / GATES_NAME).read_text())
    assert gates["held_out_loss"] == report.adapted_loss and gates["base_sha256"] == "f" * 64
