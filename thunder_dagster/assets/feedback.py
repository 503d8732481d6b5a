from dataclasses import dataclass, replace
from datetime import date, datetime

import dagster as dg

from thunder_dagster.feedback.records import QueryStats
from thunder_dagster.feedback.rules import Decision, day_bounds, decide, decide_labels
from thunder_dagster.resources.alerting import AlertingResource
from thunder_dagster.resources.home import ThunderHome
from thunder_dagster.resources.queries import QueryLogStore
from thunder_dagster.resources.retrieval import SentenceEncoderResource
from thunder_dagster.runtime.metadata import image, markdown_table
from thunder_dagster.runtime.partitions import ANALYSIS_TIMEZONE, agent_days


@dataclass(frozen=True)
class WindowStats:
    agent_id: str
    day: str
    window_start: datetime
    window_end: datetime
    stats: QueryStats


def agent_and_day(context: dg.AssetExecutionContext) -> tuple[str, date]:
    key = context.partition_key.keys_by_dimension
    return key["agent"], date.fromisoformat(key["day"])


@dg.asset(group_name="feedback", kinds={"sql"}, partitions_def=agent_days)
def query_log_stats(
    context: dg.AssetExecutionContext, queries: QueryLogStore
) -> dg.Output[WindowStats]:
    """The statistics of an agent's answers over one day, exactly its 24 hours.

    Totals, confidence, teacher fallbacks and feedback. Days the schedule missed are partitions
    of their own, which it requests when it runs again."""
    agent_id, day = agent_and_day(context)
    start, end = day_bounds(day, ANALYSIS_TIMEZONE)
    with queries.open() as store:
        corrections, correctors = store.correction_counts(agent_id, start, end)
        stats = replace(
            store.stats(agent_id, start, end), corrections=corrections, correctors=correctors
        )
    values = stats.as_dict()
    context.log.info(f"{agent_id} {day}: {values} over [{start}, {end}) UTC")
    return dg.Output(
        WindowStats(agent_id, day.isoformat(), start, end, stats),
        metadata={
            "window_start_utc": start.isoformat(),
            "window_end_utc": end.isoformat(),
            **{
                name: float(value) if isinstance(value, float) else value
                for name, value in values.items()
            },
        },
    )


def agent_kind(thunder: ThunderHome, agent_id: str):
    """The agent's entry in the task registry; None when its settings cannot be read."""
    from thunder_dagster.tasks.agents import AgentSettingsError, read_task
    from thunder_dagster.tasks.registry import task_kind

    try:
        return task_kind(read_task(thunder.home().agent_dir(agent_id)))
    except AgentSettingsError:
        return None


def held_back(thunder: ThunderHome, store, agent_id: str, decision: Decision) -> Decision:
    """The rules' decision, or none with the reason it is held back: the agent's task is not
    retrained from feedback (the task registry's learns_from_feedback), or its challenger is
    still under an A/B test that has neither concluded nor run out of days (no churn)."""
    from thunder_dagster.feedback.experiments import AbTestStore, waiting_for
    from thunder_dagster.times import utc_now

    if not decision.fires:
        return decision
    kind = agent_kind(thunder, agent_id)
    if kind is not None and not kind.learns_from_feedback:
        reason = (
            f"{decision.change} would fire ({decision.reason}), but a {kind.name} agent is not "
            f"retrained from its feedback: it {kind.summary}"
        )
        return replace(decision, change="none", reason=reason)
    waiting = waiting_for(AbTestStore(store.engine).running(agent_id), utc_now())
    if waiting is not None:
        reason = f"{decision.change} would fire ({decision.reason}), but {waiting}"
        return replace(decision, change="none", reason=reason)
    return decision


@dg.asset(group_name="feedback", kinds={"sql"}, partitions_def=agent_days)
def training_triggers(
    context: dg.AssetExecutionContext,
    query_log_stats: WindowStats,
    queries: QueryLogStore,
    thunder: ThunderHome,
) -> dg.Output[Decision]:
    """The retraining the day's statistics call for: fine_tune, distillation or none for a
    generator; relabel or none for a classifier (its users' corrected labels).

    With the rules' inputs, the reason and the learning rate; recorded in the query-log store,
    where retraining_sensor reads it. An agent whose task the rules do not retrain (the task
    registry's learns_from_feedback) gets none, with the rules' reason kept; so does an agent
    whose challenger is still under an A/B test within its days (no new challenger replaces
    one before its verdict)."""
    kind = agent_kind(thunder, query_log_stats.agent_id)
    rules = decide_labels if kind is not None and kind.labelled else decide
    with queries.open() as store:
        decision = held_back(thunder, store, query_log_stats.agent_id, rules(query_log_stats.stats))
        store.record_analysis(
            query_log_stats.agent_id,
            date.fromisoformat(query_log_stats.day),
            query_log_stats.window_start,
            query_log_stats.window_end,
            decision.to_json(),
        )
    context.log.info(
        f"{query_log_stats.agent_id} {query_log_stats.day}: {decision.change}: {decision.reason}"
    )
    return dg.Output(
        decision,
        metadata={
            "change": decision.change,
            "fires": decision.fires,
            "reason": decision.reason,
            "learning_rate": dg.MetadataValue.float(decision.learning_rate),
            "agent_id": query_log_stats.agent_id,
            "day": query_log_stats.day,
            "inputs": markdown_table(
                ["statistic", "value"],
                [[name, f"{value:.4g}"] for name, value in decision.inputs.items()],
            ),
        },
    )


@dg.asset(group_name="feedback", kinds={"onnx"}, partitions_def=agent_days)
def query_drift(
    context: dg.AssetExecutionContext,
    queries: QueryLogStore,
    thunder: ThunderHome,
    encoder: SentenceEncoderResource,
    alerting: AlertingResource,
) -> dg.MaterializeResult:
    """How far one day's queries lie from the agent's training text (its drift score):
    the champion's per-character loss on each query against its loss on the test split, and
    each query's distance to its nearest chunk against the chunks' own, in standard deviations
    of the agent's text; the day's score is the 95th percentile. Kept in the query-log store,
    where alert_sensor's drift rule reads it; the plot shows it over the days."""
    from datetime import UTC
    from datetime import datetime as moment

    from thunder_dagster.documents.datasets import latest_dataset
    from thunder_dagster.feedback.schema import DriftScore
    from thunder_dagster.modeling.text import dataset_documents, split_documents
    from thunder_dagster.monitoring import drift
    from thunder_dagster.serving.classification import LoadedClassifier
    from thunder_dagster.serving.loading import load_deployed
    from thunder_dagster.serving.sessions import NoDeploymentError

    agent_id, day = agent_and_day(context)
    start, end = day_bounds(day, ANALYSIS_TIMEZONE)
    home = thunder.home()
    with queries.open() as store:
        texts = [text for text in store.queries_on(agent_id, start, end) if len(text) >= 2]
    if len(texts) < drift.MIN_QUERIES:
        context.log.info(f"{agent_id} {day}: {len(texts)} queries; too few to judge drift")
        return dg.MaterializeResult(metadata={"queries": len(texts), "scored": False})
    unscored = dg.MaterializeResult(metadata={"queries": len(texts), "scored": False})
    try:
        model = load_deployed(home.deployments_dir(agent_id))
    except NoDeploymentError as error:
        context.log.warning(f"{agent_id} {day}: no drift score: {error}")
        return unscored
    if isinstance(model, LoadedClassifier):
        report = _classifier_drift(home, agent_id, model, encoder, texts)
        if report is None:
            context.log.warning(f"{agent_id} {day}: no labelled examples to compare with")
            return unscored
    else:
        dataset = latest_dataset(home.processed_dir(agent_id))
        if dataset is None:
            context.log.warning(f"{agent_id} {day}: no dataset to compare the queries with")
            return unscored
        test_text = split_documents(dataset_documents(dataset.path)).test
        pieces = drift.reference_pieces(test_text, [len(text) for text in texts])
        losses = drift.text_losses(model.session, model.vocabulary, model.context_length, texts)
        reference = drift.text_losses(model.session, model.vocabulary, model.context_length, pieces)
        distances, reference_distances = _distances(context, home, agent_id, encoder, texts, pieces)
        report = drift.drift_report(losses, reference, distances, reference_distances)
    with queries.open() as store:
        store.record_drift(
            DriftScore(
                agent_id=agent_id,
                day=day,
                queries=report.queries,
                p95=report.p95,
                loss_p95=report.loss_p95,
                distance_p95=report.distance_p95,
                model_version=model.deployment.version,
                computed_at=moment.now(UTC),
            )
        )
        history = store.drift_history(agent_id)
    bound = alerting.bounds().drift_p95
    context.log.info(
        f"{agent_id} {day}: drift p95 {report.p95:.2f} over {report.queries} queries "
        f"(loss {report.loss_p95:.2f}, distance {report.distance_p95}); bound {bound:g}"
    )
    return dg.MaterializeResult(metadata=_drift_metadata(agent_id, report, model, bound, history))


def _classifier_drift(home, agent_id: str, model, encoder, texts: list[str]):
    """A classifier's queries against its newest labelled examples: their test split, and
    their training split for the distances; None without labelled examples."""
    from thunder_dagster.documents.labelled import latest_labelled, read_labelled_set
    from thunder_dagster.modeling.evaluation import split_rows
    from thunder_dagster.monitoring import drift

    manifest = latest_labelled(home.processed_dir(agent_id))
    if manifest is None:
        return None
    examples, labels = read_labelled_set(manifest["path"])
    train, _, test = split_rows(examples, labels)
    return drift.classifier_report(
        model,
        encoder.encoder().encode,
        texts,
        [examples[row] for row in train],
        [examples[row] for row in test],
    )


def _distances(context, home, agent_id: str, encoder, texts: list[str], pieces: list[str]):
    """Each query's and each reference piece's distance to its nearest chunk of the index the
    server searches; (None, None) without one."""
    from thunder_dagster.monitoring import drift
    from thunder_dagster.retrieval.index import IndexUnavailableError, RetrievalIndex
    from thunder_dagster.retrieval.index import pointed_version as index_pointed

    version = index_pointed(home.retrieval_dir(agent_id))
    if version is None:
        return None, None
    try:
        index = RetrievalIndex(home.retrieval_dir(agent_id) / "indexes" / version)
        loaded = encoder.encoder()
        distances = drift.nearest_distances(loaded.encode(texts), index.vectors)
        reference = drift.piece_distances(
            pieces, loaded.encode(pieces), index.chunks, index.vectors
        )
    except IndexUnavailableError as error:
        context.log.warning(f"{agent_id}: drift without distances: {error}")
        return None, None
    return distances, reference


def _drift_metadata(agent_id: str, report, model, bound: float, history) -> dict:
    from thunder_dagster.modeling.plots import drift_history

    plot = drift_history(
        [row.day.isoformat() for row in history],
        [row.p95 for row in history],
        bound,
        title=f"{agent_id}: daily drift",
    )
    return {
        "queries": report.queries,
        "scored": True,
        "drift_p95": dg.MetadataValue.float(report.p95),
        "loss_p95": dg.MetadataValue.float(report.loss_p95),
        "distance_p95": dg.MetadataValue.float(
            report.distance_p95 if report.distance_p95 is not None else float("nan")
        ),
        "ks_statistic": dg.MetadataValue.float(report.ks_statistic),
        "ks_p_value": dg.MetadataValue.float(report.ks_p_value),
        "model_version": model.deployment.version,
        "bound": dg.MetadataValue.float(bound),
        "history": image(plot, "drift over the days"),
    }
