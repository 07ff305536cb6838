"""projsvc: services in a project (their names unique in it, apart from their creators' own)

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
    with op.batch_alter_table("services") as batch:
        batch.add_column(sa.Column("project", sa.String(64), nullable=False, server_default=""))
        batch.drop_constraint("uq_services_owner_name", type_="unique")
        batch.create_unique_constraint(
            "uq_services_owner_project_name", ["owner", "project", "name"]
        )
    op.create_index(
        "uq_services_project_name",
        "services",
        ["project", "name"],
        unique=True,
        sqlite_where=IN_A_PROJECT,
        postgresql_where=IN_A_PROJECT,
    )


def downgrade() -> None:
    op.execute(sa.text("DELETE FROM services WHERE project <> ''"))
    op.drop_index("uq_services_project_name", table_name="services")
    with op.batch_alter_table("services") as batch:
        batch.drop_constraint("uq_services_owner_project_name", type_="unique")
        batch.create_unique_constraint("uq_services_owner_name", ["owner", "name"])
        batch.drop_column("project")
