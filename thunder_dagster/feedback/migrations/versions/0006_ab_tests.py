"""A/B tests as objects: per agent, a challenger version, its traffic split, the minimum sample
per variant and the confidence, with who started and ended each.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ab_tests",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("agent_id", sa.String(64), nullable=False),
        sa.Column("running_agent", sa.String(64), nullable=True, unique=True),
        sa.Column("champion_version", sa.String(32), nullable=False),
        sa.Column("challenger_version", sa.String(32), nullable=False),
        sa.Column("split", sa.Float, nullable=False),
        sa.Column("min_sample", sa.Integer, nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(160), nullable=False),
        sa.Column("ended_at", sa.DateTime, nullable=True),
        sa.Column("ended_by", sa.String(160), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
    )
    op.create_index("ix_ab_tests_agent_id", "ab_tests", ["agent_id"])


def downgrade() -> None:
    op.drop_table("ab_tests")
