"""The classification and sentiment tasks: an agent's labelled uploads to a classifier on the
sentence encoder, verified and deployed like a generator.

labelled_examples (ingest) -> text_classifier (its three blocking checks) -> classifier_deployment
"""

from dataclasses import dataclass
from pathlib import Path

import dagster as dg
from pydantic import Field

from thunder_dagster.documents.ingest import DocumentSet
from thunder_dagster.documents.labelled import (
    QUERY_SOURCE,
    LabelledSet,
    collect_examples,
    write_labelled,
)
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore
from thunder_dagster.resources.retrieval import SentenceEncoderResource
from thunder_dagster.resources.tracking import MlflowTracking
from thunder_dagster.resources.tuning import TuningStorage
from thunder_dagster.runtime.configs import DeadlineConfig
from thunder_dagster.runtime.errors import failing_on
from thunder_dagster.runtime.metadata import check_results, image, links, markdown_table
from thunder_dagster.runtime.partitions import agents
from thunder_dagster.runtime.policies import IO_RETRY, TRAINING_POOL, TRAINING_RETRY
from thunder_dagster.runtime.releases import test_challenger
from thunder_dagster.tasks.agents import AgentSettingsError, read_task
from thunder_dagster.tasks.registry import task_kind
from thunder_dagster.times import utc_now

SHOWN_PROBLEMS = 20


@dg.asset(group_name="ingest", kinds={"pandas"}, partitions_def=agents, retry_policy=IO_RETRY)
def labelled_examples(
    context: dg.AssetExecutionContext,
    documents: DocumentSet,
    thunder: ThunderHome,
    queries: QueryLogStore,
) -> dg.Output[LabelledSet]:
    """Every labelled upload's rows (CSV with text and label columns, or JSONL objects), then
    the labels users gave the agent's classify answers, each text once, in
    processed/labelled.csv with each row's source (file:line, or query:<id>); rows left out
    are listed by file and line. A query-log store it cannot read fails the step (retried):
    a version without the users' labels would drop them from the next classifier."""
    from sqlalchemy.exc import SQLAlchemyError

    files = [(document.rel_path, list(document.examples)) for document in documents.labelled]
    try:
        with queries.open() as store:
            corrections = store.corrections(context.partition_key)
    except SQLAlchemyError as error:
        detail = str(error.orig if getattr(error, "orig", None) else error).strip().splitlines()
        raise dg.Failure(
            f"the users' labels could not be read from the query-log store "
            f"{queries.shown_url()} ({type(error).__name__}: {detail[0] if detail else ''}); "
            "nothing was written, the uploads' examples are unchanged: start the store (or "
            "fix THUNDER_QUERY_DB_URL) and materialize labelled_examples again"
        ) from None
    examples = collect_examples(context.partition_key, files, corrections)
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
            "from_feedback": sum(source.startswith(QUERY_SOURCE) for source in written.sources),
            "user_labels": len(corrections),
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
    # The test split (texts and their labels) the gate scores it and the champion on.
    test_texts: tuple[str, ...] = ()
    test_labels: tuple[str, ...] = ()


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
    retry_policy=TRAINING_RETRY,
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
    the frozen sentence encoder's vectors, searched by TPE over learning rate, width, layers,
    dropout and activation, their logits mixed by the weights the validation split prefers;
    exported with the encoder as one ONNX graph and held to three gates on a test split
    nothing in its training saw: parity with Keras, finite probabilities, and better than the
    majority label.

    models/<agent>/builds/classifier-<examples version>-<run>/: model.keras, model.onnx, the
    tokenizer and the card, with accuracy, macro F1 and per-label precision and recall."""
    from thunder_dagster.modeling.builds import SearchPlan, build_classifier
    from thunder_dagster.modeling.classifiers import ClassifierBudget
    from thunder_dagster.modeling.evaluation import LabelledDataError

    home = thunder.home()
    agent_id = context.partition_key
    task = _task(home, agent_id)
    if not labelled_examples.texts:
        raise dg.Failure(
            f"agent {agent_id!r} has no labelled examples: upload a CSV with text and label "
            'columns, or a JSONL file of {"text": ..., "label": ...} objects, to any of its '
            "category folders"
        )
    build = f"classifier-{labelled_examples.version}-{context.run.run_id[:8]}"
    sentence = encoder.encoder()
    plan = SearchPlan(
        trials=config.trials,
        seconds=config.seconds(),
        budget=ClassifierBudget(
            epochs=config.epochs,
            batch_size=config.batch_size,
            patience=config.patience,
            max_seconds=config.seconds() / max(1, config.trials + 1),
        ),
        seed=config.seed,
        storage=tuning.storage_url(),
        study_name=f"{agent_id}-classifier-{labelled_examples.version}-{context.run.run_id[:8]}",
    )
    tags = {
        "agent_id": agent_id,
        "task": task,
        "labelled_version": labelled_examples.version,
        "encoder": sentence.version,
        "dagster_run_id": context.run.run_id,
    }
    tracker = tracking.tracker(context.log.warning)
    with failing_on(LabelledDataError):
        built = build_classifier(
            agent_id,
            task,
            labelled_examples,
            sentence,
            plan,
            home.models_dir(agent_id) / "builds" / build,
            tracker,
            tags,
            context.log.info,
        )
    export = built.export
    context.log.info(
        f"{task} head {built.result.params}: accuracy {export.metrics.accuracy:.3f}, macro F1 "
        f"{export.metrics.macro_f1:.3f} on {len(built.split.test_y)} test examples; checks "
        + ", ".join(f"{c.name} {'passed' if c.passed else 'FAILED'}" for c in export.checks)
    )
    trained = TrainedClassifier(
        agent_id=agent_id,
        model_dir=str(built.model_dir),
        onnx_path=export.onnx_path,
        onnx_sha256=export.onnx_sha256,
        labelled_version=labelled_examples.version,
        task=task,
        passed=export.passed,
        mlflow_run_id=built.mlflow_run_id,
        test_texts=tuple(labelled_examples.texts[row] for row in built.split.rows[2]),
        test_labels=tuple(labelled_examples.labels[row] for row in built.split.rows[2]),
    )
    yield dg.Output(trained, metadata=_classifier_metadata(built, tracker))
    yield from check_results(export.checks)


def _classifier_metadata(built, tracker) -> dict:
    from thunder_dagster.modeling.builds import trial_history
    from thunder_dagster.modeling.plots import optimization_history

    card, export, split = built.card, built.export, built.split
    measured = card.classification
    history = optimization_history(
        trial_history(built.result),
        f"{card.agent_id}: TPE over the head",
        "cross-entropy, nats",
    )
    return {
        "task": card.task,
        "labels": len(split.labels),
        "accuracy": dg.MetadataValue.float(measured.accuracy),
        "macro_f1": dg.MetadataValue.float(measured.macro_f1),
        "majority_accuracy": dg.MetadataValue.float(measured.majority_accuracy),
        "majority_macro_f1": dg.MetadataValue.float(measured.majority_macro_f1),
        "test_loss": dg.MetadataValue.float(export.test_loss),
        "per_label": markdown_table(
            ["label", "precision", "recall", "F1", "test examples"], _per_label(measured)
        ),
        "confusion_matrix": image(built.confusion_png, "confusion matrix"),
        "trials": image(history, "optimization history"),
        "params": dg.MetadataValue.json(card.params),
        "lexical_features": measured.lexical_features,
        "lexical_epochs": len(built.result.lexical_epochs or []),
        "mix": dg.MetadataValue.json(
            {
                "words_weight": measured.words_weight,
                "head_weight": measured.head_weight,
                "validation_loss": built.result.mix[2]
                if built.result.mix
                else card.metrics.validation_loss,
            }
        ),
        "examples": card.examples,
        "encoder": measured.encoder,
        "max_abs_difference": dg.MetadataValue.float(export.max_abs_difference),
        "classify_p50_ms": dg.MetadataValue.float(round(export.latency_ms["p50_ms"], 3)),
        "model_dir": dg.MetadataValue.path(str(built.model_dir)),
        "split_sizes": dg.MetadataValue.json(
            {
                "train": len(split.train_y),
                "validation": len(split.validation_y),
                "test": len(split.test_y),
            }
        ),
        **links(mlflow_run=tracker.run_url(built.mlflow_run_id)),
    }


@dg.asset(group_name="classification", kinds={"onnx", "mlflow"}, partitions_def=agents)
def classifier_deployment(
    context: dg.AssetExecutionContext,
    text_classifier: TrainedClassifier,
    thunder: ThunderHome,
    tracking: MlflowTracking,
    queries: QueryLogStore,
):
    """The verified classifier released as the agent's champion: a version folder, a version
    of the registered model thunder-<agent> with the champion alias, and the pointer the model
    server reloads (POST /v1/agents/{id}/classify answers from it). It passes the champion
    gate first: its macro F1 and the serving classifier's on its test split; a worse one (past
    release.tolerance) is released as challenger under an A/B test that judges both on the
    accuracy of their rated answers, or refused (release.when_worse); both scores are on
    this page."""
    from thunder_dagster.deployments.gate import MACRO_F1, PairScores
    from thunder_dagster.deployments.pointers import pointer_path
    from thunder_dagster.deployments.releases import release
    from thunder_dagster.tracking.registry import registered_model_name

    if not text_classifier.passed:
        raise dg.Failure("text_classifier failed its checks: nothing is deployed")
    home = thunder.home()
    agent_id = context.partition_key
    gate, accuracies = _gate(home, agent_id, text_classifier)
    context.log.info(f"champion gate: {gate.reason}")
    if not gate.released:
        metadata = gate.metadata() | accuracies
        raise dg.Failure(gate.reason, metadata=metadata, allow_retries=False)
    tracker = tracking.tracker(context.log.warning)
    move = release(
        home.models_dir(agent_id),
        home.deployments_dir(agent_id),
        agent_id,
        Path(text_classifier.model_dir),
        text_classifier.onnx_sha256,
        tracking.registry(tracker),
        role=gate.role,
        run_id=text_classifier.mlflow_run_id,
        tags={"dataset_version": text_classifier.labelled_version, "task": text_classifier.task},
    )
    released = move.deployment
    context.log.info(f"deployed {move.describe()}")
    tested = {}
    if gate.role == "challenger":
        tested = test_challenger(context, queries, gate.champion_version, released.version)
        PairScores(
            gate.champion_version,
            released.version,
            text_classifier.labelled_version,
            gate.champion_score,
            gate.candidate_score,
            MACRO_F1.key,
        ).write(home.deployments_dir(agent_id))
    return dg.Output(
        released,
        metadata={
            "version": released.version,
            "role": gate.role,
            "task": text_classifier.task,
            "previous_version": move.previous.version if move.previous else "none",
            "pointer": dg.MetadataValue.path(str(pointer_path(home.deployments_dir(agent_id)))),
            "registry_version": released.registry_version or "unregistered",
            **links(
                mlflow_model_version=tracker.model_version_url(
                    registered_model_name(agent_id), released.registry_version
                )
            ),
        }
        | gate.metadata()
        | accuracies
        | tested,
    )


def _gate(home, agent_id: str, trained: TrainedClassifier):
    """The verdict on the candidate's and the serving classifier's macro F1 on the candidate's
    test split, and their accuracies."""
    from thunder_dagster.deployments.gate import judge_classifier
    from thunder_dagster.tasks.agents import read_release_policy

    with failing_on(AgentSettingsError):
        policy = read_release_policy(home.agent_dir(agent_id))
    return judge_classifier(
        home.deployments_dir(agent_id),
        trained,
        list(trained.test_texts),
        list(trained.test_labels),
        policy,
    )
