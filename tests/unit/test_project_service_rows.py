"""Service rows in a project on SQLite and the real PostgreSQL: the migration keeps the
rows written before it (each in no project), and a name is unique among an owner's own
services and among a project's, never the one against the other."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from hpcgate.clock import utcnow
from hpcgate.store.db import Database, alembic_config
from hpcgate.store.services import ServiceStore
from hpcgate.store.tables import ServiceRow
from tests.unit.test_project_roles import _postgres_database

OLD_ROW = (
    "INSERT INTO services (name, owner, spec, min_replicas, max_replicas, stopping, created_at)"
    " VALUES ('web', 'alice', '{}', 0, 1, false, '2026-01-01 00:00:00+00:00')"
)


def _to_0019(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "0019")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ServiceStore]:
    """A service store whose database held a service before the migration."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db"
    else:
        url = await _postgres_database()
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(_to_0019)
        await connection.execute(text(OLD_ROW))
    await engine.dispose()
    database = Database(url)
    await database.start()  # the newest migration
    yield ServiceStore(database)
    await database.close()


def _row(owner: str, name: str, project: str = "") -> ServiceRow:
    return ServiceRow(
        name=name,
        owner=owner,
        project=project,
        spec="{}",
        min_replicas=0,
        max_replicas=1,
        stopping=False,
        created_at=utcnow(),
    )


async def test_an_older_row_is_in_no_project_and_names_stay_apart(store: ServiceStore) -> None:
    old = await store.find("alice", "web")
    assert old is not None and old.project == ""
    await store.add(_row("alice", "web", "climate"))  # alice's own web and the project's
    await store.add(_row("bob", "web"))
    await store.add(_row("bob", "web", "ocean"))
    with pytest.raises(IntegrityError):
        await store.add(_row("bob", "web", "climate"))  # the project has one: alice's
    with pytest.raises(IntegrityError):
        await store.add(_row("alice", "web"))
    found = await store.find("alice", "web")
    assert found is not None and found.pk == old.pk  # her own, not the project's
    assert [(r.owner, r.project) for r in await store.of_project("climate")] == [
        ("alice", "climate")
    ]
    assert len(await store.owned("alice")) == 2  # her limits count what runs as her
