"""Project rows and their members' rows."""

from __future__ import annotations

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hpcgate.store.db import Database
from hpcgate.store.rows import Rows
from hpcgate.store.tables import MemberRow, ProjectRow


class ProjectStore(Rows[ProjectRow]):
    """Project and member rows. ``version`` counts the writes made through this store, so
    what is worked out from the memberships (the ``/v1`` models a member may use) knows
    when it is out of date: only this gateway writes them."""

    kind = ProjectRow

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.version = 0

    async def create(self, project: ProjectRow, owner: MemberRow) -> bool:
        """Add a project with its first owner; False if the name is taken."""
        async with self._db.session() as session, session.begin():
            if await session.get(ProjectRow, project.name) is not None:
                return False
            session.add(project)
            await session.flush()
            session.add(owner)
        self.version += 1
        return True

    async def named(self, names: list[str]) -> list[ProjectRow]:
        query = select(ProjectRow).where(ProjectRow.name.in_(names)).order_by(ProjectRow.name)
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def every(self) -> list[ProjectRow]:
        async with self._db.reader() as session:
            return list(await session.scalars(select(ProjectRow).order_by(ProjectRow.name)))

    async def members(self, project: str) -> list[MemberRow]:
        query = select(MemberRow).where(MemberRow.project == project).order_by(MemberRow.user)
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def memberships(self, user: str) -> list[MemberRow]:
        async with self._db.reader() as session:
            return list(await session.scalars(select(MemberRow).where(MemberRow.user == user)))

    async def role(self, project: str, user: str) -> str | None:
        """The user's stored role in the project, read now (None: not a member)."""
        async with self._db.reader() as session:
            row = await session.get(MemberRow, (project, user))
            return None if row is None else row.role

    async def set_member(self, row: MemberRow, max_members: int) -> str:
        """Add the member or change its role, in one transaction: "added", "changed",
        "full" (the project has ``max_members``) or "last owner" (the change would leave
        the project without an owner)."""
        try:
            return await self._set_member(row, max_members)
        finally:
            self.version += 1

    async def _set_member(self, row: MemberRow, max_members: int) -> str:
        async with self._db.session() as session, session.begin():
            found = await session.get(MemberRow, (row.project, row.user), with_for_update=True)
            if found is None:
                if await _count(session, row.project) >= max_members:
                    return "full"
                session.add(row)
                return "added"
            demoted = found.role == "owner" and row.role != "owner"
            if demoted and await _owners(session, row.project) <= 1:
                return "last owner"
            found.role = row.role
            return "changed"

    async def remove_member(self, project: str, user: str) -> str:
        """Remove the member: "removed", "absent" or "last owner"."""
        try:
            return await self._remove_member(project, user)
        finally:
            self.version += 1

    async def _remove_member(self, project: str, user: str) -> str:
        async with self._db.session() as session, session.begin():
            found = await session.get(MemberRow, (project, user), with_for_update=True)
            if found is None:
                return "absent"
            if found.role == "owner" and await _owners(session, project) <= 1:
                return "last owner"
            await session.execute(
                delete(MemberRow).where(MemberRow.project == project, MemberRow.user == user)
            )
            return "removed"


async def _count(session: AsyncSession, project: str) -> int:
    query = select(func.count()).select_from(MemberRow).where(MemberRow.project == project)
    return int(await session.scalar(query) or 0)


async def _owners(session: AsyncSession, project: str) -> int:
    """The project's owners, their rows locked (PostgreSQL) so that two removals side by
    side cannot each leave the other as the last owner and then remove it too."""
    query = (
        select(MemberRow.user)
        .where(MemberRow.project == project, MemberRow.role == "owner")
        .with_for_update()
    )
    return len(list(await session.scalars(query)))
