"""Service and replica rows: only reads and writes (the rules are the services domain's)."""

from __future__ import annotations

from collections import Counter
from typing import Any

from sqlalchemy import delete, func, select, update

from hpcgate.clock import utcnow
from hpcgate.store.db import Database
from hpcgate.store.rows import Rows
from hpcgate.store.tables import ReplicaRow, ServiceRow

DECLARED = ""  # the owner of a service declared in the configuration
NO_PROJECT = ""  # the project of a service in none
LIVE = ("starting", "ready", "draining")


class ServiceStore(Rows[ServiceRow]):
    """Service rows. ``version`` counts the writes made through this store (each counted
    once committed), so a copy of the rows in memory knows when it is out of date: only
    this gateway writes them (its home lock keeps it alone on its database)."""

    kind = ServiceRow

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.version = 0

    async def add(self, row: ServiceRow) -> ServiceRow:
        added = await super().add(row)
        self.version += 1
        return added

    async def all(self) -> list[ServiceRow]:
        async with self._db.reader() as session:
            return list(await session.scalars(select(ServiceRow).order_by(ServiceRow.pk)))

    async def find(self, owner: str, name: str) -> ServiceRow | None:
        """``owner``'s own service of that name (none of a project's)."""
        query = select(ServiceRow).where(
            ServiceRow.owner == owner, ServiceRow.project == NO_PROJECT, ServiceRow.name == name
        )
        async with self._db.reader() as session:
            return (await session.scalars(query)).first()

    async def of_project(self, project: str) -> list[ServiceRow]:
        """The project's services, by name."""
        query = select(ServiceRow).where(ServiceRow.project == project).order_by(ServiceRow.name)
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def every(self) -> list[ServiceRow]:
        """Every service of every owner (and the declared ones), by owner and name."""
        query = select(ServiceRow).order_by(ServiceRow.owner, ServiceRow.name)
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def owned(self, owner: str) -> list[ServiceRow]:
        """Every service that runs as ``owner``: its own and those it made in projects."""
        query = select(ServiceRow).where(ServiceRow.owner == owner).order_by(ServiceRow.name)
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def declare(self, name: str, spec: str, low: int, high: int) -> None:
        """Create or refresh a declared service's row from the configuration."""
        values = {"spec": spec, "min_replicas": low, "max_replicas": high, "stopping": False}
        async with self._db.session() as session, session.begin():
            query = select(ServiceRow).where(
                ServiceRow.owner == DECLARED,
                ServiceRow.project == NO_PROJECT,
                ServiceRow.name == name,
            )
            row = (await session.scalars(query)).first()
            if row is None:
                session.add(ServiceRow(name=name, owner=DECLARED, created_at=utcnow(), **values))
            else:
                for key, value in values.items():
                    setattr(row, key, value)
        self.version += 1

    async def update(self, pk: int, **values: Any) -> None:
        async with self._db.session() as session, session.begin():
            await session.execute(update(ServiceRow).where(ServiceRow.pk == pk).values(**values))
        self.version += 1

    async def remove(self, pk: int) -> None:
        async with self._db.session() as session, session.begin():
            await session.execute(delete(ReplicaRow).where(ReplicaRow.service_pk == pk))
            await session.execute(delete(ServiceRow).where(ServiceRow.pk == pk))
        self.version += 1


class ReplicaStore(Rows[ReplicaRow]):
    kind = ReplicaRow

    async def of(self, service_pk: int, live_only: bool = False) -> list[ReplicaRow]:
        query = select(ReplicaRow).where(ReplicaRow.service_pk == service_pk)
        if live_only:
            query = query.where(ReplicaRow.state.in_(LIVE))
        async with self._db.reader() as session:
            return list(await session.scalars(query.order_by(ReplicaRow.pk)))

    async def get_pk(self, pk: int) -> ReplicaRow | None:
        async with self._db.reader() as session:
            return await session.get(ReplicaRow, pk)

    async def ports_in_use(self, system: str) -> set[int]:
        query = select(ReplicaRow.port).where(
            ReplicaRow.system == system, ReplicaRow.state.in_(LIVE)
        )
        async with self._db.reader() as session:
            return set(await session.scalars(query))

    async def live_by_owner(self) -> Counter[str]:
        """How many live replicas the services of each owner have (declared ones: ``""``)."""
        query = (
            select(ServiceRow.owner, func.count(ReplicaRow.pk))
            .join(ServiceRow, ServiceRow.pk == ReplicaRow.service_pk)
            .where(ReplicaRow.state.in_(LIVE))
            .group_by(ServiceRow.owner)
        )
        async with self._db.reader() as session:
            return Counter(dict(list(await session.execute(query))))

    async def update(self, pk: int, **values: Any) -> None:
        values.setdefault("updated_at", utcnow())
        async with self._db.session() as session, session.begin():
            await session.execute(update(ReplicaRow).where(ReplicaRow.pk == pk).values(**values))

    async def forget_ended(self, service_pk: int, keep: int) -> None:
        """Delete all but the newest ``keep`` ended replicas of a service."""
        query = (
            select(ReplicaRow.pk)
            .where(ReplicaRow.service_pk == service_pk, ReplicaRow.state.not_in(LIVE))
            .order_by(ReplicaRow.pk.desc())
            .offset(keep)
        )
        async with self._db.session() as session, session.begin():
            old = list(await session.scalars(query))
            if old:
                await session.execute(delete(ReplicaRow).where(ReplicaRow.pk.in_(old)))
