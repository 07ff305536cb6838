"""API keys: a token restricted to functions, with its limits; the key behind an invocation

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
    # All nullable: the rows already there read as full tokens and invocations of no key.
    op.add_column("tokens", sa.Column("functions", sa.Text(), nullable=True))
    op.add_column("tokens", sa.Column("per_minute", sa.Integer(), nullable=True))
    op.add_column("tokens", sa.Column("concurrent", sa.Integer(), nullable=True))
    op.add_column("function_invocations", sa.Column("key_id", sa.String(32), nullable=True))
    op.create_index("ix_function_invocations_key_id", "function_invocations", ["key_id"])


def downgrade() -> None:
    op.drop_index("ix_function_invocations_key_id", table_name="function_invocations")
    op.drop_column("function_invocations", "key_id")
    op.drop_column("tokens", "concurrent")
    op.drop_column("tokens", "per_minute")
    op.drop_column("tokens", "functions")
