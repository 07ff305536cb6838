"""consent: requests held until their user approves them out of band

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consents",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("credential", sa.String(64), nullable=False, unique=True),
        sa.Column("scopes", sa.String(255), nullable=False),
        sa.Column("client", sa.String(256), nullable=True),
        sa.Column("asker_user", sa.String(128), nullable=False),
        sa.Column("asker_token", sa.String(64), nullable=False),
        sa.Column("asker_client", sa.String(256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(64), nullable=True),
    )
    op.create_index("ix_consents_user", "consents", ["user"])


def downgrade() -> None:
    op.drop_index("ix_consents_user", table_name="consents")
    op.drop_table("consents")
