"""AI grades (seed 003's AI feedback): the teacher's 1-5 grade of an answer under a fixed
rubric, kept apart from users' feedback so the daily rules never count them.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ai_grades",
        sa.Column(
            "query_id",
            sa.String(32),
            sa.ForeignKey("query_logs.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("rubric", sa.String(16), primary_key=True),
        sa.Column("score", sa.Integer, nullable=False),
        sa.Column("grader", sa.String(64), nullable=False),
        sa.Column("graded_at", sa.DateTime, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("ai_grades")
