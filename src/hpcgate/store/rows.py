"""What every store of one kind of row does: add one, get one by key."""

from __future__ import annotations

from typing import Generic, TypeVar

from hpcgate.store.db import Database
from hpcgate.store.tables import Base

R = TypeVar("R", bound=Base)


class Rows(Generic[R]):
    """Add and get rows of ``kind``; subclasses add their own queries."""

    kind: type[R]

    def __init__(self, database: Database) -> None:
        self._db = database

    async def add(self, row: R) -> R:
        async with self._db.session() as session, session.begin():
            session.add(row)
        return row

    async def get(self, key: str) -> R | None:
        async with self._db.reader() as session:
            return await session.get(self.kind, key)
