"""A classifier and a reward model built end to end, as modeling/models.py builds a generator:
searched and trained in Keras, saved, exported to ONNX with their gates, described by a typed
card, tracked in MLflow. The assets only wire these to Dagster (inputs, metadata, checks).
"""

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from thunder_dagster.files import sha256_of, write_atomically
from thunder_dagster.modeling.cards import (
    KERAS_NAME,
    ONNX_NAME,
    TOKENIZER_NAME,
    CardMetrics,
    ClassifierMeasures,
    ExportSummary,
    ModelCard,
)
from thunder_dagster.modeling.classifiers import ClassifierBudget, ClassifierResult
from thunder_dagster.modeling.evaluation import LabelledSplit
from thunder_dagster.modeling.heads import ClassifierExport
from thunder_dagster.modeling.rewards import RewardExport, RewardMetrics
from thunder_dagster.times import utc_now

CLASSIFIER_FAMILY = "sentence_head"  # a dense head on the frozen sentence encoder
CONFUSION_NAME = "confusion_matrix.png"
REWARD_CARD = "reward_card.json"
REWARD_KERAS = "reward.keras"
REWARD_ONNX = "reward.onnx"


@dataclass(frozen=True)
class ClassifierBuild:
    card: ModelCard
    model_dir: Path
    split: LabelledSplit
    result: ClassifierResult
    export: ClassifierExport
    confusion_png: bytes
    mlflow_run_id: str | None


@dataclass(frozen=True)
class SearchPlan:
    """How long and how widely a head is searched and trained, and where its study lives."""

    trials: int
    seconds: float
    budget: ClassifierBudget
    seed: int = 0
    storage: str | None = None
    study_name: str | None = None


def build_classifier(
    agent_id: str,
    task: str,
    labelled,
    sentence,
    plan: SearchPlan,
    model_dir: Path,
    tracker,
    tags: dict[str, str],
    log: Callable[[str], None],
) -> ClassifierBuild:
    """A classifier for the agent's labelled examples (`labelled`: texts, labels, version) on
    the sentence encoder: split, searched, trained, saved with the encoder's tokenizer,
    exported and gated, its card written in `model_dir`. LabelledDataError when the examples
    cannot be split."""
    from thunder_dagster.modeling.backend import keras
    from thunder_dagster.modeling.classifiers import TokenizedTexts, train_classifier
    from thunder_dagster.modeling.evaluation import split_labelled
    from thunder_dagster.modeling.heads import export_classifier
    from thunder_dagster.modeling.plots import confusion_matrix

    started = time.monotonic()
    texts = list(labelled.texts)
    split = split_labelled(texts, list(labelled.labels), sentence.encode(texts))
    log(
        f"{len(texts)} examples of {len(split.labels)} labels embedded by {sentence.version} in "
        f"{time.monotonic() - started:.1f} s: {len(split.train_y)} train, "
        f"{len(split.validation_y)} validation, {len(split.test_y)} test"
    )
    run = tracker.start_run(f"text_classifier {agent_id}", tags)
    try:
        model, result = train_classifier(
            split,
            plan.trials,
            plan.budget,
            plan.seed,
            storage=plan.storage,
            study_name=plan.study_name,
            deadline=time.monotonic() + plan.seconds,
            tokens=TokenizedTexts(
                sentence.tokens(texts), sentence.vocab_size, sentence.special_ids()
            ),
        )
        model_dir.mkdir(parents=True, exist_ok=True)
        model.save(model_dir / KERAS_NAME)
        tokenizer = (sentence.files.folder / TOKENIZER_NAME).read_bytes()
        (model_dir / TOKENIZER_NAME).write_bytes(tokenizer)
        test_texts = [texts[row] for row in split.rows[2]]
        activation = result.params["activation"]
        export = export_classifier(
            model, activation, sentence, split, test_texts, model_dir / ONNX_NAME, result.lexical
        )
    except Exception:
        tracker.end_run(run, "FAILED")
        raise
    finally:
        keras.backend.clear_session()
    title = f"{agent_id}: test split ({len(split.test_y)} examples)"
    metrics = export.metrics
    plot = confusion_matrix(list(metrics.labels), [list(row) for row in metrics.confusion], title)
    (model_dir / CONFUSION_NAME).write_bytes(plot)
    card = _classifier_card(agent_id, task, labelled, sentence, plan, split, result, export)
    card = card.replace(
        mlflow_run_id=run,
        metrics=CardMetrics(
            **{**asdict(card.metrics), "train_seconds": time.monotonic() - started}
        ),
    ).with_files(
        {
            KERAS_NAME: sha256_of(model_dir / KERAS_NAME),
            ONNX_NAME: export.onnx_sha256,
            TOKENIZER_NAME: sha256_of(model_dir / TOKENIZER_NAME),
        }
    )
    card.write(model_dir)
    _track_classifier(tracker, run, card, plan, export, model_dir)
    return ClassifierBuild(card, model_dir, split, result, export, plot, run)


def _classifier_card(agent_id, task, labelled, sentence, plan, split, result, export) -> ModelCard:
    from thunder_dagster.modeling.heads import PROBABILITIES
    from thunder_dagster.retrieval.graph import INPUTS

    best_validation = min(epoch["validation_loss"] for epoch in result.epochs)
    words_weight, head_weight, _ = result.mix or (0.0, 1.0, best_validation)
    measures = ClassifierMeasures(
        **asdict(export.metrics),
        encoder=sentence.version,
        lexical_features=result.lexical.vocabulary.known if result.lexical else 0,
        words_weight=words_weight,
        head_weight=head_weight,
    )
    return ModelCard(
        agent_id=agent_id,
        family=CLASSIFIER_FAMILY,
        params=result.params,
        context_length=sentence.files.max_length,
        vocab=(),
        metrics=CardMetrics(
            validation_loss=best_validation,
            unigram_loss=export.prior_loss,
            epochs=len(result.epochs),
            test_loss=export.test_loss,
        ),
        dataset_version=labelled.version,
        study=plan.study_name,
        examples=len(labelled.texts),
        learning_rate=result.params["learning_rate"],
        created_at=utc_now().isoformat(),
        onnx=ExportSummary(
            test_loss=export.test_loss,
            parity_max_abs_difference=export.max_abs_difference,
            latency_ms=export.latency_ms,
            step_graph=False,
            checks={check.name: check.passed for check in export.checks},
            input={"names": list(INPUTS), "dtype": "int64", "shape": ["batch", "sequence"]},
            output={
                "name": PROBABILITIES,
                "dtype": "float32",
                "shape": ["batch", len(split.labels)],
            },
        ),
        task=task,
        labels=split.labels,
        classification=measures,
    )


def _track_classifier(tracker, run, card: ModelCard, plan, export, model_dir: Path) -> None:
    measured = card.classification
    tracker.log_params(
        run,
        card.params
        | {
            "trials": plan.trials,
            "task": card.task,
            "lexical_features": measured.lexical_features,
            "words_weight": measured.words_weight,
            "head_weight": measured.head_weight,
        },
    )
    tracker.log_metrics(
        run,
        {
            "accuracy": measured.accuracy,
            "macro_f1": measured.macro_f1,
            "majority_accuracy": measured.majority_accuracy,
            "majority_macro_f1": measured.majority_macro_f1,
            "test_loss": export.test_loss,
            "prior_loss": export.prior_loss,
            "best_validation_loss": card.metrics.validation_loss,
            **{f"precision_{n}": v for n, v in enumerate(measured.precision)},
            **{f"recall_{n}": v for n, v in enumerate(measured.recall)},
        },
    )
    tracker.log_artifacts(run, model_dir, "build")
    tracker.end_run(run)


def trial_history(result: ClassifierResult) -> list[dict]:
    """The search's trials as the optimisation-history plot takes them."""
    return [
        {
            "number": t["number"],
            "state": t["state"],
            "value": None if math.isnan(t["validation_loss"]) else t["validation_loss"],
        }
        for t in result.trials
    ]


@dataclass(frozen=True)
class RewardCard:
    """What a reward model folder holds and what is known of it (reward_card.json)."""

    agent_id: str
    version: str
    encoder: str
    params: dict
    metrics: RewardMetrics
    rubric: str
    ai_weight: float
    onnx_sha256: str
    checks: dict[str, bool]
    created_at: str
    mlflow_run_id: str | None

    def write(self, folder: Path) -> Path:
        path = Path(folder) / REWARD_CARD
        write_atomically(path, json.dumps(asdict(self), indent=2).encode())
        return path


@dataclass(frozen=True)
class RewardBuild:
    card: RewardCard
    folder: Path
    export: RewardExport


@dataclass(frozen=True)
class RewardPlan:
    trials: int
    epochs: int
    ai_weight: float
    seconds: float
    seed: int = 0


def build_reward_model(
    agent_id: str, rated: list, sentence, plan: RewardPlan, folder: Path, rubric: str, tracker, tags
) -> RewardBuild:
    """A reward model for the agent's rated answers (RatedAnswer, human and AI): searched,
    trained, saved, exported and gated in `folder`, its card written there. RewardDataError
    when there is too little to learn from."""
    from thunder_dagster.modeling.backend import keras
    from thunder_dagster.modeling.rewards import (
        export_reward_model,
        features,
        held_out,
        train_reward_model,
    )

    run = tracker.start_run(f"reward_model {agent_id}", tags)
    try:
        model, params, metrics = train_reward_model(
            rated,
            sentence.encode,
            trials=plan.trials,
            ai_weight=plan.ai_weight,
            epochs=plan.epochs,
            seed=plan.seed,
            deadline=time.monotonic() + plan.seconds,
        )
        folder.mkdir(parents=True, exist_ok=True)
        model.save(folder / REWARD_KERAS)
        probe_rows = [r for r in rated if held_out(r)]
        probe = features(
            sentence.encode([r.prompt for r in probe_rows]),
            sentence.encode([r.answer for r in probe_rows]),
        )
        export = export_reward_model(
            model, params["activation"], np.asarray(probe), metrics, folder / REWARD_ONNX
        )
    except Exception:
        tracker.end_run(run, "FAILED")
        raise
    finally:
        keras.backend.clear_session()
    card = RewardCard(
        agent_id=agent_id,
        version=folder.name,
        encoder=sentence.version,
        params=params,
        metrics=metrics,
        rubric=rubric,
        ai_weight=plan.ai_weight,
        onnx_sha256=export.onnx_sha256,
        checks={check.name: check.passed for check in export.checks},
        created_at=utc_now().isoformat(),
        mlflow_run_id=run,
    )
    card.write(folder)
    tracker.log_params(run, params | {"ai_weight": plan.ai_weight, "trials": plan.trials})
    tracker.log_metrics(
        run,
        {
            "spearman": metrics.spearman,
            "pairwise_accuracy": metrics.pairwise_accuracy,
            "held_out": metrics.held_out,
            "trained_on_human": metrics.trained_on_human,
            "trained_on_ai": metrics.trained_on_ai,
        },
    )
    tracker.log_artifacts(run, folder, "reward_model")
    tracker.end_run(run)
    return RewardBuild(card, folder, export)
