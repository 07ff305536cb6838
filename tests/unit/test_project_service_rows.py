"""Service and function rows in a project on SQLite and the real PostgreSQL: the
migration keeps the rows written before it (each in no project), and a name is unique
among an owner's own and among a project's, never the one against the other; a caller's
roles in all its projects at once, and the project store's count of writes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import Connection, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import create_async_engine

from hpcgate.clock import utcnow
from hpcgate.model.principal import Principal, Restriction, Role, Scope
from hpcgate.model.projects import MemberChange, NewProject
from hpcgate.projects import Projects
from hpcgate.store.db import Database, alembic_config
from hpcgate.store.functions import FunctionStore
from hpcgate.store.projects import ProjectStore
from hpcgate.store.services import ServiceStore
from hpcgate.store.tables import FunctionRow, ServiceRow
from tests.support.postgres import new_database

OLD_ROWS = (
    "INSERT INTO services (name, owner, spec, min_replicas, max_replicas, stopping, created_at)"
    " VALUES ('web', 'alice', '{}', 0, 1, false, '2026-01-01 00:00:00+00:00')",
    "INSERT INTO functions (owner, name, system, spec, created_at)"
    " VALUES ('alice', 'echo', 'local', '{}', '2026-01-01 00:00:00+00:00')",
)


def _to_0019(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "0019")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A database that held a service and a function before the migration."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db"
    else:
        url = await new_database()
    engine = create_async_engine(url)
    async with engine.begin() as connection:
        await connection.run_sync(_to_0019)
        for row in OLD_ROWS:
            await connection.execute(text(row))
    await engine.dispose()
    migrated = Database(url)
    await migrated.start()  # the newest migration
    yield migrated
    await migrated.close()


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


async def test_an_older_service_is_in_no_project_and_names_stay_apart(
    database: Database,
) -> None:
    store = ServiceStore(database)
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


def _function(owner: str, name: str, project: str = "") -> FunctionRow:
    return FunctionRow(
        owner=owner, project=project, name=name, system="local", spec="{}", created_at=utcnow()
    )


async def test_an_older_function_is_in_no_project_and_names_stay_apart(
    database: Database,
) -> None:
    store = FunctionStore(database, cache_seconds=0)
    old = await store.find("alice", "echo")
    assert old is not None and old.project == ""
    await store.add(_function("alice", "echo", "climate"))
    await store.add(_function("bob", "echo"))
    with pytest.raises(IntegrityError):
        await store.add(_function("bob", "echo", "climate"))
    found = await store.find_in("climate", "echo")
    assert found is not None and found.owner == "alice"
    assert [r.owner for r in await store.named("echo")] == ["alice", "bob"]  # their own


async def test_a_callers_roles_in_all_its_projects_and_the_count_of_writes(
    database: Database,
) -> None:
    projects = Projects(ProjectStore(database))
    admin = Principal("admin", frozenset({Scope.ADMIN}), "t0")
    for name in ("climate", "ocean"):
        await projects.create(admin, NewProject(name=name, owner="bob"))
    written = projects.version
    await projects.set_member(admin, "climate", "ada", MemberChange(role=Role.VIEWER))
    assert projects.version > written  # a /v1 table worked out before is not kept
    ada = Principal("ada", frozenset({Scope.JOBS_READ}), "t1", projects=frozenset({"ocean"}))
    assert await projects.roles(ada) == {"climate": Role.VIEWER, "ocean": Role.MEMBER}
    limited = Principal("ada", ada.scopes, "t2", restriction=Restriction(project="ocean"))
    assert await projects.roles(limited) == {}  # no stored role in ocean, none given
    written = projects.version
    await projects.remove_member(admin, "climate", "ada")
    assert projects.version > written
    assert await projects.roles(ada) == {"ocean": Role.MEMBER}
