"""Audit rows: inserted in batches, read newest first, deleted only past their retention."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select

from hpcgate.store.db import Database
from hpcgate.store.tables import AuditRow


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which records a read gives: every field left None matches all."""

    user: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    status: int | None = None
    before: int | None = None  # the cursor: records older than this one


class AuditStore:
    """The ``audit`` table. It has no update, and :meth:`prune` is its only delete."""

    def __init__(self, database: Database) -> None:
        self._db = database

    async def add_many(self, rows: Sequence[dict[str, object]]) -> None:
        """One INSERT for the batch (column name to value, one dict per record)."""
        async with self._db.session() as session, session.begin():
            await session.execute(insert(AuditRow), list(rows))

    async def page(self, where: AuditFilter, limit: int) -> list[AuditRow]:
        query = select(AuditRow).order_by(AuditRow.pk.desc()).limit(limit)
        if where.user is not None:
            query = query.where(AuditRow.user == where.user)
        if where.since is not None:
            query = query.where(AuditRow.at >= where.since)
        if where.until is not None:
            query = query.where(AuditRow.at < where.until)
        if where.status is not None:
            query = query.where(AuditRow.status == where.status)
        if where.before is not None:
            query = query.where(AuditRow.pk < where.before)
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def prune(self, before: datetime) -> int:
        """The retention prune: deletes the records of requests before ``before``."""
        async with self._db.session() as session, session.begin():
            result = await session.execute(delete(AuditRow).where(AuditRow.at < before))
        return int(getattr(result, "rowcount", 0))
