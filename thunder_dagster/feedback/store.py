"""The query-log store: SQLAlchemy over SQLite (default, under THUNDER_HOME) or PostgreSQL.

The schema is Alembic's: `QueryStore.open` upgrades the database to the newest migration, so a
fresh file and a months-old one end the same. Fine-tune rows are claimed by a conditional
UPDATE, so each row is marked used by exactly one successful run.
"""

from collections.abc import Iterable
from datetime import date, datetime

from sqlalchemy import (
    Engine,
    and_,
    case,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import sessionmaker

from thunder_dagster.feedback.cache import ResponseCache
from thunder_dagster.feedback.corrections import CorrectionReads
from thunder_dagster.feedback.database import open_engine
from thunder_dagster.feedback.monitoring import MonitoringReads
from thunder_dagster.feedback.records import (
    AB_RATINGS_PER_USER,
    EXTERNAL_TEACHER_PREFIX,
    HIGH_CONFIDENCE,
    POSITIVE_SCORE,
    RATINGS_PER_USER,
    QueryRecord,
    QueryStats,
    TrainingExample,
    UnknownQueryError,
    VariantOutcome,
    answer_was_right,
    new_query_id,
)
from thunder_dagster.feedback.schema import (
    AiGrade,
    Analysis,
    Feedback,
    QueryLog,
)
from thunder_dagster.times import utc_now


class QueryStore(ResponseCache, MonitoringReads, CorrectionReads):
    def __init__(self, engine: Engine):
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    @classmethod
    def open(cls, url: str, statement_seconds: float | None = None) -> "QueryStore":
        """The store at `url`, its schema upgraded to the newest migration; on PostgreSQL a
        statement over `statement_seconds` fails (the model server's: no request waits on a
        hung database)."""
        return cls(open_engine(url, statement_seconds))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "QueryStore":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def log_query(self, record: QueryRecord, at: datetime | None = None) -> str:
        query_id = new_query_id()
        self.log_queries([(query_id, record, at or utc_now())])
        return query_id

    def log_queries(
        self, rows: Iterable[tuple[str, QueryRecord, datetime]], replaying: bool = False
    ) -> None:
        """Insert answers logged elsewhere with their ids and times: one executemany in one
        transaction (Core, not the ORM's unit of work, which costs the server's CPU).

        `replaying` (the spool's rows) leaves an id already in the log as it is, so replaying
        the same rows twice (a replay cut short) writes each once."""
        values = [
            {"id": query_id, "created_at": at, "used_for_training": False, **record.__dict__}
            for query_id, record, at in rows
        ]
        if not values:
            return
        statement = insert(QueryLog)
        if replaying:
            if self.engine.dialect.name == "postgresql":
                from sqlalchemy.dialects.postgresql import insert as dialect_insert
            else:
                from sqlalchemy.dialects.sqlite import insert as dialect_insert
            statement = dialect_insert(QueryLog).on_conflict_do_nothing(index_elements=["id"])
        with self.engine.begin() as connection:
            connection.execute(statement, values)

    def add_feedback(
        self,
        query_id: str,
        score: int,
        comment: str | None = None,
        at: datetime | None = None,
        label: str | None = None,
    ) -> None:
        """Store (or replace) the feedback on one answer; `label` is the label a classifier's
        answer should have had, when the user gave one."""
        with self.sessions.begin() as session:
            if session.get(QueryLog, query_id) is None:
                raise UnknownQueryError(f"unknown query id {query_id!r}")
            session.merge(
                Feedback(
                    query_id=query_id,
                    score=score,
                    comment=comment,
                    created_at=at or utc_now(),
                    label=label,
                )
            )

    def query(self, query_id: str) -> QueryLog | None:
        with self.sessions() as session:
            return session.get(QueryLog, query_id)

    def stats(self, agent_id: str, start: datetime, end: datetime) -> QueryStats:
        """The statistics of the answers given in [start, end). Ratings count people, not
        rows: an answer holds one rating (a new one replaces it), and each user's first
        RATINGS_PER_USER ratings of the window count, so one user or key cannot fire a rule."""
        window = and_(
            QueryLog.agent_id == agent_id, QueryLog.created_at >= start, QueryLog.created_at < end
        )
        answers = select(
            func.count(QueryLog.id),
            func.coalesce(func.avg(QueryLog.confidence), 0.0),
            func.coalesce(func.sum(case((QueryLog.fallback, 1), else_=0)), 0),
            func.coalesce(func.sum(case((QueryLog.confidence >= HIGH_CONFIDENCE, 1), else_=0)), 0),
        ).where(window)
        rated = (
            select(
                QueryLog.user_id,
                Feedback.score,
                func.row_number()
                .over(partition_by=QueryLog.user_id, order_by=(Feedback.created_at, QueryLog.id))
                .label("nth"),
            )
            .join(Feedback, Feedback.query_id == QueryLog.id)
            .where(window)
            .subquery()
        )
        ratings = select(
            func.count(),
            func.coalesce(func.sum(case((rated.c.score >= POSITIVE_SCORE, 1), else_=0)), 0),
            func.count(func.distinct(rated.c.user_id)),
        ).where(rated.c.nth <= RATINGS_PER_USER)
        with self.sessions() as session:
            total, confidence, fallbacks, high = session.execute(answers).one()
            with_feedback, positive, raters = session.execute(ratings).one()
        return QueryStats(
            total_queries=int(total),
            avg_confidence=float(confidence),
            teacher_fallbacks=int(fallbacks),
            high_confidence_responses=int(high),
            user_feedback_available=int(with_feedback),
            positive_feedback=int(positive),
            raters=int(raters),
        )

    def fine_tune_examples(self, agent_id: str, limit: int) -> list[TrainingExample]:
        """Well-rated answers (score >= 4) not yet used for training, oldest first."""
        statement = (
            select(QueryLog.id, QueryLog.prompt, QueryLog.response, QueryLog.sources)
            .join(Feedback, Feedback.query_id == QueryLog.id)
            .where(
                QueryLog.agent_id == agent_id,
                Feedback.score >= POSITIVE_SCORE,
                QueryLog.used_for_training.is_(False),
            )
            .order_by(QueryLog.created_at, QueryLog.id)
            .limit(limit)
        )
        with self.sessions() as session:
            return [TrainingExample(*row) for row in session.execute(statement)]

    def rated_answers(self, agent_id: str, limit: int) -> list[tuple[str, str, str, int]]:
        """(query id, prompt, answer, score) of the agent's answers users rated, newest first.
        Answers of an external teacher are left out: the reward model ranks the agent's own."""
        statement = (
            select(QueryLog.id, QueryLog.prompt, QueryLog.response, Feedback.score)
            .join(Feedback, Feedback.query_id == QueryLog.id)
            .where(
                QueryLog.agent_id == agent_id,
                ~QueryLog.model_version.startswith(EXTERNAL_TEACHER_PREFIX),
            )
            .order_by(QueryLog.created_at.desc(), QueryLog.id)
            .limit(limit)
        )
        with self.sessions() as session:
            return [tuple(row) for row in session.execute(statement)]

    def ungraded_answers(
        self, agent_id: str, rubric: str, limit: int
    ) -> list[tuple[str, str, str]]:
        """(query id, prompt, answer) of answers no user rated and the teacher has not graded
        under `rubric`, newest first: what AI feedback adds."""
        graded = select(AiGrade.query_id).where(AiGrade.rubric == rubric)
        statement = (
            select(QueryLog.id, QueryLog.prompt, QueryLog.response)
            .outerjoin(Feedback, Feedback.query_id == QueryLog.id)
            .where(
                QueryLog.agent_id == agent_id,
                Feedback.query_id.is_(None),
                QueryLog.id.not_in(graded),
                ~QueryLog.model_version.startswith(EXTERNAL_TEACHER_PREFIX),
            )
            .order_by(QueryLog.created_at.desc(), QueryLog.id)
            .limit(limit)
        )
        with self.sessions() as session:
            return [tuple(row) for row in session.execute(statement)]

    def add_ai_grade(
        self, query_id: str, rubric: str, score: int, grader: str, at: datetime | None = None
    ) -> None:
        with self.sessions.begin() as session:
            if session.get(QueryLog, query_id) is None:
                raise UnknownQueryError(f"unknown query id {query_id!r}")
            session.merge(
                AiGrade(
                    query_id=query_id,
                    rubric=rubric,
                    score=score,
                    grader=grader,
                    graded_at=at or utc_now(),
                )
            )

    def ai_graded_answers(self, agent_id: str, rubric: str, limit: int) -> list[tuple]:
        """(query id, prompt, answer, grade) of the agent's answers the teacher graded under
        `rubric` and no user rated, newest first."""
        statement = (
            select(QueryLog.id, QueryLog.prompt, QueryLog.response, AiGrade.score)
            .join(AiGrade, AiGrade.query_id == QueryLog.id)
            .outerjoin(Feedback, Feedback.query_id == QueryLog.id)
            .where(
                QueryLog.agent_id == agent_id,
                AiGrade.rubric == rubric,
                Feedback.query_id.is_(None),
            )
            .order_by(QueryLog.created_at.desc(), QueryLog.id)
            .limit(limit)
        )
        with self.sessions() as session:
            return [tuple(row) for row in session.execute(statement)]

    def mark_used(self, query_ids: Iterable[str], run_id: str) -> int:
        """Mark rows used by `run_id`; rows another run already claimed stay its own.

        Returns how many rows this call marked. Marking again for the same run marks nothing.
        """
        ids = list(query_ids)
        marked = 0
        with self.sessions.begin() as session:
            for start in range(0, len(ids), 500):
                result = session.execute(
                    update(QueryLog)
                    .where(
                        QueryLog.id.in_(ids[start : start + 500]),
                        QueryLog.used_for_training.is_(False),
                    )
                    .values(used_for_training=True, used_by_run=run_id)
                )
                marked += result.rowcount
        return marked

    def used_by(self, run_id: str) -> list[str]:
        with self.sessions() as session:
            return list(session.scalars(select(QueryLog.id).where(QueryLog.used_by_run == run_id)))

    def distillation_examples(
        self, agent_id: str, min_confidence: float, limit: int
    ) -> list[TrainingExample]:
        """Teacher answers (fallbacks) whose teacher was confident, >= `min_confidence`, newest
        first. Rows logged before the teacher had its own column kept its confidence in
        `confidence`. An external teacher (API B) that reports no token probabilities is the
        stronger model by configuration: its answers count."""
        teacher = func.coalesce(QueryLog.teacher_confidence, QueryLog.confidence)
        external = and_(
            QueryLog.teacher_confidence.is_(None),
            QueryLog.model_version.startswith(EXTERNAL_TEACHER_PREFIX),
        )
        statement = (
            select(QueryLog.id, QueryLog.prompt, QueryLog.response, QueryLog.sources)
            .where(
                QueryLog.agent_id == agent_id,
                QueryLog.fallback.is_(True),
                or_(teacher >= min_confidence, external),
            )
            .order_by(QueryLog.created_at.desc(), QueryLog.id)
            .limit(limit)
        )
        with self.sessions() as session:
            return [TrainingExample(*row) for row in session.execute(statement)]

    def outcomes(self, agent_id: str, since: datetime) -> list[VariantOutcome]:
        """Per variant and model version: answers given since `since`, their scores, and
        whether each rated one was right (a classifier's answer against its user's label).
        Each user's first AB_RATINGS_PER_USER ratings of a variant count, the rest are left
        out: a test counts people, and one user cannot decide it alone."""
        with self.sessions() as session:
            rows = session.execute(
                select(
                    QueryLog.variant,
                    QueryLog.model_version,
                    QueryLog.user_id,
                    QueryLog.response,
                    Feedback.score,
                    Feedback.label,
                )
                .select_from(QueryLog)
                .outerjoin(Feedback, Feedback.query_id == QueryLog.id)
                .where(
                    QueryLog.agent_id == agent_id,
                    QueryLog.created_at >= since,
                    QueryLog.fallback.is_(False),
                )
                .order_by(QueryLog.created_at, QueryLog.id)
            ).all()
        answers: dict[tuple[str, str], int] = {}
        rated: dict[tuple[str, str], list[tuple[int, bool]]] = {}
        counted: dict[tuple[str, str, str], int] = {}
        for variant, version, user, response, score, label in rows:
            answers[(variant, version)] = answers.get((variant, version), 0) + 1
            if score is None:
                continue
            seen = counted.get((variant, version, user), 0)
            counted[(variant, version, user)] = seen + 1
            if seen < AB_RATINGS_PER_USER:  # the answer counts, a rating past the share not
                right = answer_was_right(int(score), label, response)
                rated.setdefault((variant, version), []).append((int(score), right))
        outcomes = []
        for (variant, version), count in sorted(answers.items()):
            ratings = rated.get((variant, version), [])
            scores = tuple(score for score, _ in ratings)
            outcomes.append(
                VariantOutcome(
                    variant, version, count, scores, tuple(right for _, right in ratings)
                )
            )
        return outcomes

    def record_analysis(
        self, agent_id: str, day: date, start: datetime, end: datetime, decision: str
    ) -> None:
        with self.sessions.begin() as session:
            session.merge(
                Analysis(
                    agent_id=agent_id,
                    day=day,
                    window_start=start,
                    window_end=end,
                    decision=decision,
                    analysed_at=utc_now(),
                )
            )

    def latest_analysis(self, agent_id: str) -> Analysis | None:
        """The analysis of the agent's latest analysed day."""
        with self.sessions() as session:
            return session.scalars(
                select(Analysis)
                .where(Analysis.agent_id == agent_id)
                .order_by(Analysis.day.desc(), Analysis.analysed_at.desc())
                .limit(1)
            ).first()

    def analyses_since(self, after: datetime | None, limit: int = 100) -> list[Analysis]:
        """Analyses recorded (or recorded again) after `after`, oldest first."""
        with self.sessions() as session:
            query = select(Analysis).order_by(Analysis.analysed_at, Analysis.agent_id)
            if after is not None:
                query = query.where(Analysis.analysed_at > after)
            return list(session.scalars(query.limit(limit)))
