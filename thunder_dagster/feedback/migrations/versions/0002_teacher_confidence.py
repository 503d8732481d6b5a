"""The teacher's confidence in its own column: `confidence` is always the local model's.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("query_logs", sa.Column("teacher_confidence", sa.Float, nullable=True))


def downgrade() -> None:
    op.drop_column("query_logs", "teacher_confidence")
