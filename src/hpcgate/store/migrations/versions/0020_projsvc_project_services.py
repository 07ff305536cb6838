"""projsvc: services and functions in a project (their names unique in it, apart from
their creators' own)

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

IN_A_PROJECT = sa.text("project <> ''")


def upgrade() -> None:
    for table in ("services", "functions"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("project", sa.String(64), nullable=False, server_default=""))
            batch.drop_constraint(f"uq_{table}_owner_name", type_="unique")
            batch.create_unique_constraint(
                f"uq_{table}_owner_project_name", ["owner", "project", "name"]
            )
        op.create_index(
            f"uq_{table}_project_name",
            table,
            ["project", "name"],
            unique=True,
            sqlite_where=IN_A_PROJECT,
            postgresql_where=IN_A_PROJECT,
        )


def downgrade() -> None:
    """Back to names unique per owner: the projects' services and functions are dropped
    (their invocations and replicas with them), since two could share an owner and a name."""
    op.execute(
        sa.text(
            "DELETE FROM function_invocations WHERE function_pk IN"
            " (SELECT pk FROM functions WHERE project <> '')"
        )
    )
    op.execute(
        sa.text(
            "DELETE FROM service_replicas WHERE service_pk IN"
            " (SELECT pk FROM services WHERE project <> '')"
        )
    )
    for table in ("functions", "services"):
        op.execute(sa.text(f"DELETE FROM {table} WHERE project <> ''"))  # noqa: S608 (ours)
        op.drop_index(f"uq_{table}_project_name", table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"uq_{table}_owner_project_name", type_="unique")
            batch.create_unique_constraint(f"uq_{table}_owner_name", ["owner", "name"])
            batch.drop_column("project")
