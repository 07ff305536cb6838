"""Projects: members with roles, and what a caller may do in a project.

A caller's role in a project is the higher of two: its membership stored here (managed by
admins and the project's owners) and the one its identity provider's groups give
(``[[auth.oidc.NAME.groups]] projects``, role ``member`` unless the rule names one),
which needs no stored row. Removing a stored member leaves a provider's grant alone.

Roles are read from the store on every check, never cached, so a member removed loses
access with the next request. A caller who is no member of a project, or whose token is
limited to another project, is told the project does not exist (404), so names don't leak;
a member whose role lacks what it asks for is refused (403).
"""

from __future__ import annotations

from collections.abc import Sequence

from hpcgate.clock import utcnow
from hpcgate.model.errors import Conflict, Forbidden, Invalid, NotFound
from hpcgate.model.principal import Principal, Role, Scope
from hpcgate.model.projects import MEMBERS_MAX, Member, MemberChange, NewProject, Project
from hpcgate.store.projects import ProjectStore
from hpcgate.store.tables import MemberRow, ProjectRow


class Projects:
    """Creates projects, manages their members, and answers for a caller's role."""

    def __init__(self, store: ProjectStore, max_members: int = MEMBERS_MAX) -> None:
        self._store = store
        self._max = max_members

    @property
    def version(self) -> int:
        """The store's count of writes: a stored role changes only with it."""
        return self._store.version

    async def role(self, who: Principal, project: str) -> Role | None:
        """The caller's role in ``project`` now (None: none, or its token is limited to
        another project)."""
        if not who.sees_project(project):
            return None
        stored = await self._store.role(project, who.user)
        roles = [Role(stored)] if stored is not None else []
        if (given := who.provider_role(project)) is not None:
            roles.append(given)
        return max(roles, key=lambda role: role.rank, default=None)

    async def roles(self, who: Principal) -> dict[str, Role]:
        """The caller's role in each project it has one in now (its token's limit applied)."""
        found = {row.project: Role(row.role) for row in await self._store.memberships(who.user)}
        for project in who.projects:
            given, held = who.provider_role(project), found.get(project)
            if given is not None and (held is None or given.rank > held.rank):
                found[project] = given
        return {name: role for name, role in found.items() if who.sees_project(name)}

    async def require(self, who: Principal, project: str, scope: Scope) -> Role:
        """The caller's role in ``project`` if it and the token both allow ``scope``:
        NotFound for a non-member, Forbidden for a member whose role or token lacks it."""
        role = await self.role(who, project)
        if role is None:
            raise NotFound(f"no project {project!r}")
        if scope not in role.scopes:
            raise Forbidden(f"a project {role.value} lacks the '{scope}' scope in {project!r}")
        who.require(scope)
        return role

    async def create(self, who: Principal, request: NewProject) -> Project:
        """A new project with its first owner (admins only)."""
        _admin(who)
        now = utcnow()
        row = ProjectRow(name=request.name, description=request.description, created_at=now)
        owner = MemberRow(
            project=request.name, user=request.owner or who.user, role=Role.OWNER, added_at=now
        )
        if not await self._store.create(row, owner):
            raise Conflict(f"project {request.name!r} exists")
        return await self._view(request.name, await self.role(who, request.name))

    async def get(self, who: Principal, name: str) -> Project:
        """The project, for a caller with a role in it or an admin (a stored one)."""
        role = await self.role(who, name)
        found = await self._store.get(name)
        if role is None and (found is None or not _is_admin(who)):
            raise NotFound(f"no project {name!r}")
        members = [] if found is None else await self._store.members(name)
        return _project(name, found, members, role)

    async def list(self, who: Principal) -> Sequence[Project]:
        """Every project for an admin; else those the caller has a role in."""
        if _is_admin(who):
            rows = await self._store.every()
            names = sorted({row.name for row in rows} | who.projects)
        else:
            stored = {row.project for row in await self._store.memberships(who.user)}
            names = sorted(stored | who.projects)
        seen = [name for name in names if who.sees_project(name)]
        return [await self._view(name, await self.role(who, name)) for name in seen]

    async def _view(self, name: str, role: Role | None) -> Project:
        found = await self._store.get(name)
        members = [] if found is None else await self._store.members(name)
        return _project(name, found, members, role)

    async def set_member(
        self, who: Principal, project: str, user: str, change: MemberChange
    ) -> Project:
        """Add ``user`` to the project or change its role (admins and owners)."""
        await self._manager(who, project)
        row = MemberRow(project=project, user=user, role=change.role, added_at=utcnow())
        outcome = await self._store.set_member(row, self._max)
        if outcome == "full":
            raise Invalid(f"project {project!r} has {self._max} members, the most it may")
        _not_last_owner(outcome, project)
        return await self.get(who, project)

    async def remove_member(self, who: Principal, project: str, user: str) -> None:
        """Remove ``user`` from the project (admins and owners; any member itself)."""
        if user != who.user or await self.role(who, project) is None:
            await self._manager(who, project)
        outcome = await self._store.remove_member(project, user)
        if outcome == "absent":
            raise NotFound(f"{user!r} is no stored member of project {project!r}")
        _not_last_owner(outcome, project)

    async def _manager(self, who: Principal, project: str) -> None:
        """NotFound unless the project is stored and the caller sees it; Forbidden unless
        it may manage its members."""
        role = await self.role(who, project)
        stored = await self._store.get(project)
        if stored is None or (role is None and not _is_admin(who)):
            raise NotFound(f"no project {project!r}")
        if not _is_admin(who) and role is not Role.OWNER:
            raise Forbidden(f"only an admin or an owner of {project!r} manages its members")


def _is_admin(who: Principal) -> bool:
    return who.has(Scope.ADMIN) and who.restriction is None


def _admin(who: Principal) -> None:
    if not _is_admin(who):
        raise Forbidden("only an admin (with an unlimited token) creates projects")


def _not_last_owner(outcome: str, project: str) -> None:
    if outcome == "last owner":
        raise Conflict(f"project {project!r} would have no owner left: make another owner first")


def _project(
    name: str, row: ProjectRow | None, members: list[MemberRow], role: Role | None
) -> Project:
    return Project(
        name=name,
        description="" if row is None else row.description,
        created_at=None if row is None else row.created_at,
        members=[Member(user=m.user, role=Role(m.role), added_at=m.added_at) for m in members],
        my_role=role,
    )
