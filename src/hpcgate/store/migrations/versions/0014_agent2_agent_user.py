"""tokens: the one user an agent token's agent must serve (agent2)

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Null for the agent tokens made before: a root agent or any user's, as they were.
    op.add_column("tokens", sa.Column("agent_user", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("agent_user")
