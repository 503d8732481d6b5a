"""The classification and sentiment tasks: an agent's labelled uploads to a classifier on the
sentence encoder, verified and deployed like a generator.

labelled_examples (ingest) -> text_classifier (its three blocking checks) -> classifier_deployment
"""

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import dagster as dg
from pydantic import Field

from thunder_dagster.documents.ingest import DocumentSet
from thunder_dagster.documents.labelled import LabelledSet, collect_examples, write_labelled
from thunder_dagster.files import sha256_of
from thunder_dagster.modeling.cards import TOKENIZER_NAME
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.retrieval import SentenceEncoderResource
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.resources.tuning import TuningStorage
from thunder_dagster.runtime.configs import DeadlineConfig
from thunder_dagster.runtime.errors import failing_on
from thunder_dagster.runtime.metadata import check_results, image, links, markdown_table
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.runtime.policies import TRAINING_POOL
from thunder_dagster.tasks.agents import AgentSettingsError, read_task
from thunder_dagster.tasks.registry import task_kind
from thunder_dagster.times import utc_now

CLASSIFIER_FAMILY = "sentence_head"  # a dense head on the frozen sentence encoder
CONFUSION_NAME = "confusion_matrix.png"
SHOWN_PROBLEMS = 20


@dg.asset(group_name="ingest", kinds={"pandas"}, partitions_def=agents)
def labelled_examples(
    context: dg.AssetExecutionContext, documents: DocumentSet, thunder: ThunderHome
) -> dg.Output[LabelledSet]:
    """Every labelled upload's rows (CSV with text and label columns, or JSONL objects), each
    text once, in processed/labelled.csv; rows left out are listed by file and line."""
    files = [(document.rel_path, list(document.examples)) for document in documents.labelled]
    examples = collect_examples(context.partition_key, files)
    written = write_labelled(
        thunder.home().processed_dir(context.partition_key), examples, utc_now().isoformat()
    )
    problems = [
        [document.rel_path, problem.line, problem.reason]
        for document in documents.documents
        for problem in document.row_problems
    ]
    for conflict in written.conflicts:
        context.log.warning(conflict)
    if problems:
        context.log.warning(f"{len(problems)} labelled row(s) left out; see the metadata")
    shown = problems[:SHOWN_PROBLEMS]
    return dg.Output(
        written,
        metadata={
            "dagster/row_count": len(written.texts),
            "labelled_files": len(files),
            "labels": dg.MetadataValue.json(written.counts()),
            "rows_left_out": len(problems),
            "conflicting_labels": len(written.conflicts),
            "version": written.version,
            "path": dg.MetadataValue.path(written.path),
            "left_out": markdown_table(["file", "line", "reason"], shown)
            if shown
            else dg.MetadataValue.md("No row was left out."),
        },
        data_version=dg.DataVersion(written.version),
    )


class ClassifierConfig(DeadlineConfig):
    trials: int = Field(
        default=8,
        ge=1,
        description="TPE trials over the head's learning rate, width, layers, dropout and "
        "activation",
    )
    epochs: int = Field(default=60, ge=1, description="Most epochs of a head's training")
    batch_size: int = Field(default=32, ge=1, description="Examples per batch")
    patience: int = Field(
        default=6, ge=1, description="Stop after this many epochs without a better validation loss"
    )


@dataclass(frozen=True)
class TrainedClassifier:
    agent_id: str
    model_dir: str
    onnx_path: str
    onnx_sha256: str
    labelled_version: str
    task: str
    passed: bool
    mlflow_run_id: str | None


def _task(home, agent_id: str) -> str:
    with failing_on(AgentSettingsError):
        task = read_task(home.agent_dir(agent_id))
    if not task_kind(task).labelled:
        raise dg.Failure(
            f"agent {agent_id!r} has the task {task!r}, which a classifier does not serve: set "
            f"it with `thunder task {agent_id} classification` (or sentiment) to train one"
        )
    return task


def _per_label(metrics) -> list[list]:
    return [
        [label, f"{p:.3f}", f"{r:.3f}", f"{f:.3f}", n]
        for label, p, r, f, n in zip(
            metrics.labels,
            metrics.precision,
            metrics.recall,
            metrics.f1,
            metrics.support,
            strict=True,
        )
    ]


@dg.asset(
    group_name="classification",
    kinds={"keras", "onnx", "mlflow"},
    partitions_def=agents,
    pool=TRAINING_POOL,
    check_specs=[
        dg.AssetCheckSpec(name, asset="text_classifier", blocking=True)
        for name in ("parity", "finite_outputs", "better_than_majority")
    ],
)
def text_classifier(
    context: dg.AssetExecutionContext,
    config: ClassifierConfig,
    labelled_examples: LabelledSet,
    thunder: ThunderHome,
    encoder: SentenceEncoderResource,
    tuning: TuningStorage,
    tracking: MlflowTracking,
):
    """A linear model over the texts' TF-IDF token and token-pair features and a dense head on
    the frozen sentence encoder's vectors, searched by TPE over learning
    rate, width, layers, dropout, activation), their logits mixed by the weights the
    validation split prefers; exported with the encoder as one ONNX graph and held to three
    gates on a test split nothing in its training saw: parity with Keras, finite
    probabilities, and better than the majority label.

    models/<agent>/builds/classifier-<examples version>-<run>/: model.keras, model.onnx, the
    tokenizer and the card, with accuracy, macro F1 and per-label precision and recall."""
    from thunder_dagster.modeling.backend import keras
    from thunder_dagster.modeling.cards import (
        KERAS_NAME,
        ONNX_NAME,
        CardMetrics,
        ExportSummary,
        ModelCard,
    )
    from thunder_dagster.modeling.classifiers import (
        ClassifierBudget,
        LabelledDataError,
        TokenizedTexts,
        split_labelled,
        train_classifier,
    )
    from thunder_dagster.modeling.heads import PROBABILITIES, export_classifier
    from thunder_dagster.modeling.plots import confusion_matrix, optimization_history
    from thunder_dagster.retrieval.graph import INPUTS

    home = thunder.home()
    agent_id = context.partition_key
    task = _task(home, agent_id)
    if not labelled_examples.texts:
        raise dg.Failure(
            f"agent {agent_id!r} has no labelled examples: upload a CSV with text and label "
            'columns, or a JSONL file of {"text": ..., "label": ...} objects, to any of its '
            "category folders"
        )
    started = time.monotonic()
    sentence = encoder.encoder()
    texts = list(labelled_examples.texts)
    vectors = sentence.encode(texts)
    with failing_on(LabelledDataError):
        split = split_labelled(texts, list(labelled_examples.labels), vectors)
    context.log.info(
        f"{len(texts)} examples of {len(split.labels)} labels embedded by {sentence.version} in "
        f"{time.monotonic() - started:.1f} s: {len(split.train_y)} train, "
        f"{len(split.validation_y)} validation, {len(split.test_y)} test"
    )
    tracker = tracking.tracker(context.log.warning)
    run = tracker.start_run(
        f"text_classifier {agent_id}",
        {
            "agent_id": agent_id,
            "task": task,
            "labelled_version": labelled_examples.version,
            "encoder": sentence.version,
            "dagster_run_id": context.run.run_id,
        },
    )
    budget = ClassifierBudget(
        epochs=config.epochs,
        batch_size=config.batch_size,
        patience=config.patience,
        max_seconds=config.seconds() / max(1, config.trials + 1),
    )
    study_name = f"{agent_id}-classifier-{labelled_examples.version}-{context.run.run_id[:8]}"
    try:
        model, result = train_classifier(
            split,
            config.trials,
            budget,
            config.seed,
            storage=tuning.storage_url(),
            study_name=study_name,
            deadline=time.monotonic() + config.seconds(),
            tokens=TokenizedTexts(
                sentence.tokens(texts), sentence.vocab_size, sentence.special_ids()
            ),
        )
        build = f"classifier-{labelled_examples.version}-{context.run.run_id[:8]}"
        model_dir = home.models_dir(agent_id) / "builds" / build
        model_dir.mkdir(parents=True, exist_ok=True)
        model.save(model_dir / KERAS_NAME)
        (model_dir / TOKENIZER_NAME).write_bytes(
            (sentence.files.folder / TOKENIZER_NAME).read_bytes()
        )
        test_texts = [texts[row] for row in split.rows[2]]
        export = export_classifier(
            model,
            result.params["activation"],
            sentence,
            split,
            test_texts,
            model_dir / ONNX_NAME,
            result.lexical,
        )
    except Exception:
        tracker.end_run(run, "FAILED")
        raise
    finally:
        keras.backend.clear_session()
    metrics = export.metrics
    plot = confusion_matrix(
        list(metrics.labels),
        [list(row) for row in metrics.confusion],
        title=f"{agent_id}: test split ({len(split.test_y)} examples)",
    )
    (model_dir / CONFUSION_NAME).write_bytes(plot)
    best_validation = min(epoch["validation_loss"] for epoch in result.epochs)
    lexical_features = result.lexical.vocabulary.known if result.lexical else 0
    words_weight, head_weight, _ = result.mix or (0.0, 1.0, best_validation)
    card = ModelCard(
        agent_id=agent_id,
        family=CLASSIFIER_FAMILY,
        params=result.params,
        context_length=sentence.files.max_length,
        vocab=(),
        metrics=CardMetrics(
            validation_loss=best_validation,
            unigram_loss=export.prior_loss,
            epochs=len(result.epochs),
            train_seconds=time.monotonic() - started,
            test_loss=export.test_loss,
        ),
        dataset_version=labelled_examples.version,
        study=study_name,
        examples=len(texts),
        learning_rate=result.params["learning_rate"],
        mlflow_run_id=run,
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
        classification={
            **asdict(metrics),
            "encoder": sentence.version,
            "lexical_features": lexical_features,
            "words_weight": words_weight,
            "head_weight": head_weight,
        },
    ).with_files(
        {
            KERAS_NAME: sha256_of(model_dir / KERAS_NAME),
            ONNX_NAME: export.onnx_sha256,
            TOKENIZER_NAME: sha256_of(model_dir / TOKENIZER_NAME),
        }
    )
    card.write(model_dir)
    tracker.log_params(
        run,
        result.params
        | {
            "trials": config.trials,
            "task": task,
            "lexical_features": lexical_features,
            "words_weight": words_weight,
            "head_weight": head_weight,
        },
    )
    tracker.log_metrics(
        run,
        {
            "accuracy": metrics.accuracy,
            "macro_f1": metrics.macro_f1,
            "majority_accuracy": metrics.majority_accuracy,
            "majority_macro_f1": metrics.majority_macro_f1,
            "test_loss": export.test_loss,
            "prior_loss": export.prior_loss,
            "best_validation_loss": best_validation,
            **{f"precision_{n}": v for n, v in enumerate(metrics.precision)},
            **{f"recall_{n}": v for n, v in enumerate(metrics.recall)},
        },
    )
    tracker.log_artifacts(run, model_dir, "build")
    tracker.end_run(run)
    context.log.info(
        f"{task} head {result.params}: accuracy {metrics.accuracy:.3f}, macro F1 "
        f"{metrics.macro_f1:.3f} on {len(split.test_y)} test examples (always "
        f"{metrics.majority_label!r}: {metrics.majority_accuracy:.3f} / "
        f"{metrics.majority_macro_f1:.3f}); checks "
        + ", ".join(f"{c.name} {'passed' if c.passed else 'FAILED'}" for c in export.checks)
    )
    trained = TrainedClassifier(
        agent_id=agent_id,
        model_dir=str(model_dir),
        onnx_path=export.onnx_path,
        onnx_sha256=export.onnx_sha256,
        labelled_version=labelled_examples.version,
        task=task,
        passed=export.passed,
        mlflow_run_id=run,
    )
    yield dg.Output(
        trained,
        metadata={
            "task": task,
            "labels": len(split.labels),
            "accuracy": dg.MetadataValue.float(metrics.accuracy),
            "macro_f1": dg.MetadataValue.float(metrics.macro_f1),
            "majority_accuracy": dg.MetadataValue.float(metrics.majority_accuracy),
            "majority_macro_f1": dg.MetadataValue.float(metrics.majority_macro_f1),
            "test_loss": dg.MetadataValue.float(export.test_loss),
            "per_label": markdown_table(
                ["label", "precision", "recall", "F1", "test examples"], _per_label(metrics)
            ),
            "confusion_matrix": image(plot, "confusion matrix"),
            "trials": image(
                optimization_history(
                    [
                        {
                            "number": t["number"],
                            "state": t["state"],
                            "value": None
                            if math.isnan(t["validation_loss"])
                            else t["validation_loss"],
                        }
                        for t in result.trials
                    ],
                    f"{agent_id}: TPE over the head",
                    "cross-entropy, nats",
                ),
                "optimization history",
            ),
            "params": dg.MetadataValue.json(result.params),
            "lexical_features": lexical_features,
            "lexical_epochs": len(result.lexical_epochs or []),
            "mix": dg.MetadataValue.json(
                {
                    "words_weight": words_weight,
                    "head_weight": head_weight,
                    "validation_loss": result.mix[2] if result.mix else best_validation,
                }
            ),
            "examples": len(texts),
            "encoder": sentence.version,
            "max_abs_difference": dg.MetadataValue.float(export.max_abs_difference),
            "classify_p50_ms": dg.MetadataValue.float(round(export.latency_ms["p50_ms"], 3)),
            "model_dir": dg.MetadataValue.path(str(model_dir)),
            "split_sizes": dg.MetadataValue.json(
                {
                    "train": len(split.train_y),
                    "validation": len(split.validation_y),
                    "test": len(split.test_y),
                }
            ),
            **links(mlflow_run=tracker.run_url(run)),
        },
    )
    yield from check_results(export.checks)


@dg.asset(group_name="classification", kinds={"onnx", "mlflow"}, partitions_def=agents)
def classifier_deployment(
    context: dg.AssetExecutionContext,
    text_classifier: TrainedClassifier,
    thunder: ThunderHome,
    tracking: MlflowTracking,
):
    """The verified classifier released as the agent's champion: a version folder, a version
    of the registered model thunder-<agent> with the champion alias, and the pointer the model
    server reloads (POST /v1/agents/{id}/classify answers from it)."""
    from thunder_dagster.deployments.pointers import pointer_path
    from thunder_dagster.deployments.releases import release
    from thunder_dagster.tracking.registry import registered_model_name

    if not text_classifier.passed:
        raise dg.Failure("text_classifier failed its checks: nothing is deployed")
    home = thunder.home()
    agent_id = context.partition_key
    tracker = tracking.tracker(context.log.warning)
    move = release(
        home.models_dir(agent_id),
        home.deployments_dir(agent_id),
        agent_id,
        Path(text_classifier.model_dir),
        text_classifier.onnx_sha256,
        tracking.registry(tracker),
        run_id=text_classifier.mlflow_run_id,
        tags={"dataset_version": text_classifier.labelled_version, "task": text_classifier.task},
    )
    released = move.deployment
    context.log.info(f"deployed {move.describe()}")
    return dg.Output(
        released,
        metadata={
            "version": released.version,
            "task": text_classifier.task,
            "previous_version": move.previous.version if move.previous else "none",
            "pointer": dg.MetadataValue.path(str(pointer_path(home.deployments_dir(agent_id)))),
            "registry_version": released.registry_version or "unregistered",
            **links(
                mlflow_model_version=tracker.model_version_url(
                    registered_model_name(agent_id), released.registry_version
                )
            ),
        },
    )
