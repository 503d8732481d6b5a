"""The query-log store's reads of corrected labels: the labels users gave a classifier's answers,
which become labelled examples of the agent and count toward its retraining rule."""

from datetime import datetime

from sqlalchemy import and_, func, select

from thunder_dagster.feedback.records import LABELS_PER_USER, RATINGS_PER_USER, Correction
from thunder_dagster.feedback.schema import Feedback, QueryLog


class CorrectionReads:
    """QueryStore's correction methods, on its `sessions`."""

    def corrections(self, agent_id: str) -> list[Correction]:
        """Every label users gave the agent's answers, oldest first: each user's latest
        LABELS_PER_USER (a confirmation of the label given counts as one too)."""
        ranked = (
            select(
                QueryLog.id,
                QueryLog.prompt,
                QueryLog.response,
                Feedback.label,
                QueryLog.user_id,
                Feedback.created_at,
                func.row_number()
                .over(
                    partition_by=QueryLog.user_id,
                    order_by=(Feedback.created_at.desc(), QueryLog.id.desc()),
                )
                .label("nth"),
            )
            .join(Feedback, Feedback.query_id == QueryLog.id)
            .where(QueryLog.agent_id == agent_id, Feedback.label.is_not(None))
            .subquery()
        )
        statement = (
            select(ranked)
            .where(ranked.c.nth <= LABELS_PER_USER)
            .order_by(ranked.c.created_at, ranked.c.id)
        )
        with self.sessions() as session:
            rows = session.execute(statement).all()
        return [
            Correction(row.id, row.prompt, row.response, row.label, row.user_id, row.created_at)
            for row in rows
        ]

    def correction_counts(self, agent_id: str, start: datetime, end: datetime) -> tuple[int, int]:
        """The corrections of answers given in [start, end) (a label other than the one
        answered), each user's first RATINGS_PER_USER, and the distinct users who gave them."""
        ranked = (
            select(
                QueryLog.user_id,
                func.row_number()
                .over(partition_by=QueryLog.user_id, order_by=(Feedback.created_at, QueryLog.id))
                .label("nth"),
            )
            .join(Feedback, Feedback.query_id == QueryLog.id)
            .where(
                and_(
                    QueryLog.agent_id == agent_id,
                    QueryLog.created_at >= start,
                    QueryLog.created_at < end,
                    Feedback.label.is_not(None),
                    Feedback.label != QueryLog.response,
                )
            )
            .subquery()
        )
        statement = select(func.count(), func.count(func.distinct(ranked.c.user_id))).where(
            ranked.c.nth <= RATINGS_PER_USER
        )
        with self.sessions() as session:
            counted, users = session.execute(statement).one()
        return int(counted), int(users)
