"""Consent request rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ColumnElement, and_, delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from hpcgate.store.rows import Rows
from hpcgate.store.tables import ConsentRow

PENDING = "pending"
DECIDED = ("approved", "denied")


class ConsentStore(Rows[ConsentRow]):
    kind = ConsentRow

    async def held(self, credential: str) -> ConsentRow | None:
        """The request holding ``credential``, if any."""
        query = select(ConsentRow).where(ConsentRow.credential == credential)
        async with self._db.reader() as session:
            return await session.scalar(query)

    async def open(self, row: ConsentRow) -> ConsentRow:
        """Store a new request, or, if one already holds its credential (two first
        requests at once), that one."""
        try:
            return await self.add(row)
        except IntegrityError:
            found = await self.held(row.credential)
            if found is None:
                raise
            return found

    async def find(self, user: str, state: str | None, limit: int) -> list[ConsentRow]:
        """``user``'s requests, newest first (in state ``state``, as stored, if given)."""
        query = select(ConsentRow).where(ConsentRow.user == user)
        if state is not None:
            query = query.where(ConsentRow.state == state)
        query = query.order_by(ConsentRow.created_at.desc(), ConsentRow.id).limit(limit)
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def pending(self, user: str, now: datetime) -> int:
        """How many of ``user``'s requests wait for a decision now."""
        query = select(func.count()).where(
            ConsentRow.user == user, ConsentRow.state == PENDING, ConsentRow.expires_at > now
        )
        async with self._db.reader() as session:
            return int(await session.scalar(query) or 0)

    async def decide(self, consent_id: str, state: str, by: str, now: datetime) -> bool:
        """Record a decision on a request still pending and not expired; whether it was."""
        change = (
            update(ConsentRow)
            .where(
                ConsentRow.id == consent_id,
                ConsentRow.state == PENDING,
                ConsentRow.expires_at > now,
            )
            .values(state=state, decided_at=now, decided_by=by)
        )
        async with self._db.session() as session, session.begin():
            result = await session.execute(change)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def any(self) -> bool:
        """Whether any request was ever stored."""
        async with self._db.reader() as session:
            return bool(await session.scalar(select(exists().select_from(ConsentRow))))

    async def prunable(self, cutoff: datetime, after: str, limit: int) -> list[ConsentRow]:
        """Up to ``limit`` requests decided, or lapsed, before ``cutoff``, by id after
        ``after`` (a round goes on past rows it could not delete)."""
        query = (
            select(ConsentRow)
            .where(_ended_before(cutoff), ConsentRow.id > after)
            .order_by(ConsentRow.id)
            .limit(limit)
        )
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def forget(self, ids: list[str], cutoff: datetime) -> int:
        """Delete these requests if they still ended before ``cutoff``; how many."""
        query = delete(ConsentRow).where(ConsentRow.id.in_(ids), _ended_before(cutoff))
        async with self._db.session() as session, session.begin():
            result = await session.execute(query)
        return int(getattr(result, "rowcount", 0) or 0)


def _ended_before(cutoff: datetime) -> ColumnElement[bool]:
    """Decided before ``cutoff``, or pending but lapsed before it (then none can decide it)."""
    decided = and_(ConsentRow.state.in_(DECIDED), ConsentRow.decided_at < cutoff)
    lapsed = and_(ConsentRow.state == PENDING, ConsentRow.expires_at < cutoff)
    return or_(decided, lapsed)
