"""an invocation's grace: how long a detached one runs on with no reader

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("function_invocations", sa.Column("grace_seconds", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("function_invocations", "grace_seconds")
