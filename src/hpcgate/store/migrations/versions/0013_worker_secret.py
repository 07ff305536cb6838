"""functions: the worker secret of each pool

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null for the pools made before: their workers want no secret, and are sent none.
    op.add_column("functions", sa.Column("worker_secret", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("functions") as batch:
        batch.drop_column("worker_secret")
