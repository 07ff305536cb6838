"""an invocation's grace: how long a detached one runs on with no reader

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("function_invocations", sa.Column("grace_seconds", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("function_invocations", "grace_seconds")
