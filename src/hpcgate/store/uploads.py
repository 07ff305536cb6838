"""Rows of resumable uploads in progress."""

from __future__ import annotations

from sqlalchemy import delete, select

from hpcgate.store.db import Database
from hpcgate.store.tables import UploadRow


class UploadStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def add(self, row: UploadRow) -> UploadRow:
        async with self._db.session() as session, session.begin():
            session.add(row)
        return row

    async def get(self, upload_id: str) -> UploadRow | None:
        async with self._db.reader() as session:
            return await session.get(UploadRow, upload_id)

    async def remove(self, upload_id: str) -> None:
        async with self._db.session() as session, session.begin():
            await session.execute(delete(UploadRow).where(UploadRow.id == upload_id))

    async def mine(self, owner: str) -> list[UploadRow]:
        query = select(UploadRow).where(UploadRow.owner == owner).order_by(UploadRow.created_at)
        async with self._db.reader() as session:
            return list(await session.scalars(query))
