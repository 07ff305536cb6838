"""roles: projects and their members, jobs in a project, tokens' limits (system, project,
service, read-only)

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("description", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "project_members",
        sa.Column(
            "project",
            sa.String(64),
            sa.ForeignKey("projects.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("user", sa.String(64), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_project_members_user", "project_members", ["user"])
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("project", sa.String(64), nullable=True))
        batch.create_index("ix_jobs_system_project", ["system", "project", "pk"])
    with op.batch_alter_table("tokens") as batch:
        batch.add_column(sa.Column("limit_system", sa.String(64), nullable=True))
        batch.add_column(sa.Column("limit_project", sa.String(64), nullable=True))
        batch.add_column(sa.Column("limit_service", sa.String(64), nullable=True))
        batch.add_column(
            sa.Column("read_only", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("tokens") as batch:
        batch.drop_column("read_only")
        batch.drop_column("limit_service")
        batch.drop_column("limit_project")
        batch.drop_column("limit_system")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_system_project")
        batch.drop_column("project")
    op.drop_index("ix_project_members_user", table_name="project_members")
    op.drop_table("project_members")
    op.drop_table("projects")
