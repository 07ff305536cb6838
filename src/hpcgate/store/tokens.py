"""Token rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from hpcgate.store.rows import Rows
from hpcgate.store.tables import TokenRow


class TokenStore(Rows[TokenRow]):
    kind = TokenRow

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
