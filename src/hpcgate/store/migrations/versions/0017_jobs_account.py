"""jobs: the Unix account an identity provider's mapping named for the submit

A submit whose answer was lost is settled by the job watcher; on a scheduler that is
handed the account (embedded) that means submitting again, which must run as the account
the request resolved to, never as the gateway's own.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("account", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("account")
