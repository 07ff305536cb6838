"""Token rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

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

    async def revoke(self, token_id: str, when: datetime) -> list[str]:
        """Revoke a live token and every live token issued from it, at any depth, in one
        transaction; the ids revoked (none if there is no such live token)."""
        async with self._db.session() as session, session.begin():
            live = await session.scalar(
                select(TokenRow.id).where(TokenRow.id == token_id, TokenRow.revoked_at.is_(None))
            )
            if live is None:
                return []
            family = await _descendants(session, token_id)
            await session.execute(
                update(TokenRow)
                .where(TokenRow.id.in_(family), TokenRow.revoked_at.is_(None))
                .values(revoked_at=when)
            )
        return family


async def _descendants(session: AsyncSession, token_id: str) -> list[str]:
    """``token_id`` and the tokens issued from it, breadth first."""
    family, frontier = [token_id], [token_id]
    while frontier:
        issued = select(TokenRow.id).where(TokenRow.parent_id.in_(frontier))
        children = await session.scalars(issued)
        frontier = [child for child in children if child not in family]
        family += frontier
    return family
