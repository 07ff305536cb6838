"""Token rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from hpcgate.store.db import Database
from hpcgate.store.tables import TokenRow


class TokenStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def add(self, row: TokenRow) -> TokenRow:
        async with self._db.session() as session, session.begin():
            session.add(row)
        return row

    async def get(self, token_id: str) -> TokenRow | None:
        async with self._db.reader() as session:
            return await session.get(TokenRow, token_id)

    async def find(self, user: str | None = None) -> list[TokenRow]:
        query = select(TokenRow).order_by(TokenRow.created_at)
        if user is not None:
            query = query.where(TokenRow.user == user)
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def revoke(self, token_id: str, when: datetime) -> bool:
        """Mark a token revoked; False if there is no such live token."""
        query = (
            update(TokenRow)
            .where(TokenRow.id == token_id, TokenRow.revoked_at.is_(None))
            .values(revoked_at=when)
        )
        async with self._db.session() as session, session.begin():
            result = await session.execute(query)
        return bool(getattr(result, "rowcount", 0))
