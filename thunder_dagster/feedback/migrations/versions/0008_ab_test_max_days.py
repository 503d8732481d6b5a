"""A/B tests get a maximum duration: past it, a test that has not concluded ends inconclusive
and its challenger is retired, so that a steady trickle of feedback cannot keep one running (and
the next challenger waiting) for ever.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ab_tests") as batch:
        batch.add_column(sa.Column("max_days", sa.Integer, nullable=False, server_default="14"))


def downgrade() -> None:
    with op.batch_alter_table("ab_tests") as batch:
        batch.drop_column("max_days")
