"""Rows of resumable uploads in progress."""

from __future__ import annotations

from sqlalchemy import delete

from hpcgate.store.rows import Rows
from hpcgate.store.tables import UploadRow


class UploadStore(Rows[UploadRow]):
    kind = UploadRow

    async def remove(self, upload_id: str) -> None:
        async with self._db.session() as session, session.begin():
            await session.execute(delete(UploadRow).where(UploadRow.id == upload_id))
