"""Task rows."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from hpcgate.clock import utcnow
from hpcgate.store.rows import Rows
from hpcgate.store.tables import TaskRow


class TaskStore(Rows[TaskRow]):
    kind = TaskRow

    async def mine(self, owner: str, limit: int) -> list[TaskRow]:
        query = (
            select(TaskRow)
            .where(TaskRow.owner == owner)
            .order_by(TaskRow.created_at.desc())
            .limit(limit)
        )
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def update(self, task_id: str, **values: Any) -> None:
        query = update(TaskRow).where(TaskRow.id == task_id).values(updated_at=utcnow(), **values)
        async with self._db.session() as session, session.begin():
            await session.execute(query)

    async def end_running(self, state: str, error: str, when: datetime) -> int:
        """Every task still marked running ends in ``state`` with ``error``; how many."""
        query = (
            update(TaskRow)
            .where(TaskRow.state == "running")
            .values(state=state, error=error, ended_at=when, updated_at=when)
        )
        async with self._db.session() as session, session.begin():
            result = await session.execute(query)
        return int(getattr(result, "rowcount", 0))
