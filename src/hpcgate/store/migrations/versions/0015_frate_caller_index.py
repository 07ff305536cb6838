"""functions (frate): an index to count a caller's unended invocations of a function

A function's rate limits (its registration's ``limits``) are stored with the rest of its
registration; its limit on unended invocations per caller counts them with this index.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_function_invocations_caller",
        "function_invocations",
        ["function_pk", "caller", "state"],
    )


def downgrade() -> None:
    op.drop_index("ix_function_invocations_caller", table_name="function_invocations")
