"""The services as requests look them up: read from the store once and kept in memory
until the store's next write, so a proxied request costs no database read to find its
service (the routing table of :mod:`hpcgate.services.traffic` finds its replica).

The store counts its writes (:attr:`ServiceStore.version`, each counted once committed);
a copy read at an older count is read again, whole, by one request while the others
wait for it. Services are few and change rarely; requests to them are many.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Collection

from hpcgate.model.services import ServiceSpec
from hpcgate.store.services import ServiceStore
from hpcgate.store.tables import ServiceRow


class Catalogue:
    """Every service row by (owner, name) for those in no project, and by (project, name)
    for a project's. The rows are shared: read them, never change them (a change goes
    through the store)."""

    def __init__(self, store: ServiceStore) -> None:
        self._store = store
        self._rows: dict[tuple[str, str], ServiceRow] = {}
        self._projects: dict[tuple[str, str], ServiceRow] = {}
        self._version = -1
        self._reading = asyncio.Lock()

    async def find(self, owner: str, name: str) -> ServiceRow | None:
        """``owner``'s own service of that name (``DECLARED``: a declared one)."""
        if self._version != self._store.version:
            await self._read()
        return self._rows.get((owner, name))

    async def find_in(self, project: str, name: str) -> ServiceRow | None:
        """The project's service of that name."""
        if self._version != self._store.version:
            await self._read()
        return self._projects.get((project, name))

    async def owned(self, owner: str) -> list[ServiceRow]:
        """The owner's own services (``DECLARED``: the declared ones), by name."""
        if self._version != self._store.version:
            await self._read()
        return sorted((r for r in self._rows.values() if r.owner == owner), key=lambda r: r.name)

    async def in_projects(self, projects: Collection[str]) -> list[ServiceRow]:
        """The services of these projects, by project and name."""
        if self._version != self._store.version:
            await self._read()
        found = (row for key, row in self._projects.items() if key[0] in projects)
        return sorted(found, key=lambda r: (r.project, r.name))

    async def _read(self) -> None:
        async with self._reading:
            version = self._store.version  # before the read: a write during it reads again
            if version == self._version:
                return  # another request read it meanwhile
            rows = await self._store.all()
            self._rows = {(row.owner, row.name): row for row in rows if not row.project}
            self._projects = {(row.project, row.name): row for row in rows if row.project}
            self._version = version


@functools.lru_cache(maxsize=1024)
def spec_of(text: str) -> ServiceSpec:
    """A stored spec, parsed once per distinct text (ValueError if it does not parse).
    Shared: copy it (``model_copy``) to change it."""
    return ServiceSpec.model_validate_json(text)
