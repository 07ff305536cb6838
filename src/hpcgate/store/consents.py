"""Consent request rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import exists, func, select, update
from sqlalchemy.exc import IntegrityError

from hpcgate.store.rows import Rows
from hpcgate.store.tables import ConsentRow

PENDING = "pending"


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
