"""The passages a grounded answer was conditioned on: their chunk ids, best first.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("query_logs", sa.Column("sources", sa.JSON, nullable=True))


def downgrade() -> None:
    op.drop_column("query_logs", "sources")
