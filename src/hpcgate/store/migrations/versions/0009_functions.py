"""functions and their invocations

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "functions",
        sa.Column("pk", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("system", sa.String(64), nullable=False),
        sa.Column("spec", sa.Text(), nullable=False),
        sa.Column("service_pk", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("owner", "name", name="uq_functions_owner_name"),
    )
    op.create_table(
        "function_invocations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column(
            "function_pk",
            sa.Integer(),
            sa.ForeignKey("functions.pk", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("caller", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("detached", sa.Boolean(), nullable=False),
        sa.Column("replica_pk", sa.Integer(), nullable=True),
        sa.Column("last_seq", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_function_invocations_function", "function_invocations", ["function_pk", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_function_invocations_function", table_name="function_invocations")
    op.drop_table("function_invocations")
    op.drop_table("functions")
