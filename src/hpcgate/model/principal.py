"""Who is calling: the typed identity that travels with every request."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from hpcgate.model.errors import Forbidden


class Scope(StrEnum):
    """What a token may do. ``admin`` implies every other scope."""

    JOBS_READ = "jobs:read"
    JOBS_WRITE = "jobs:write"
    FILES_READ = "files:read"
    FILES_WRITE = "files:write"
    ADMIN = "admin"
    #: An agent token's only scope: serve one system over /api/v1/agent/connect, nothing else.
    AGENT_SERVE = "agent:serve"


DEFAULT_SCOPES: frozenset[Scope] = frozenset(
    {Scope.JOBS_READ, Scope.JOBS_WRITE, Scope.FILES_READ, Scope.FILES_WRITE}
)
READ_SCOPES: frozenset[Scope] = frozenset({Scope.JOBS_READ, Scope.FILES_READ})


class Role(StrEnum):
    """A member's role in a project, weakest first (see :data:`ROLE_SCOPES`)."""

    VIEWER = "viewer"
    MEMBER = "member"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return list(Role).index(self)

    @property
    def scopes(self) -> frozenset[Scope]:
        return ROLE_SCOPES[self]


#: What each role may do with a project's jobs (and later its other resources); an owner
#: also manages the project's members. A caller acts on a project's resource with the
#: scopes both its role and its token hold.
ROLE_SCOPES: dict[Role, frozenset[Scope]] = {
    Role.VIEWER: READ_SCOPES,
    Role.MEMBER: DEFAULT_SCOPES,
    Role.OWNER: DEFAULT_SCOPES,
}


@dataclass(frozen=True, slots=True)
class Restriction:
    """What a limited token is limited to (each None or False: no such limit).

    With ``functions`` it is an API key: invoking these functions of its user's (and
    reading the invocations it started), at most ``per_minute`` requests in any minute and
    ``concurrent`` unended invocations at once. Any token may also be limited to one
    ``system``, one ``project``, one ``service`` and to reading (``read_only``)."""

    functions: frozenset[str] | None = None
    per_minute: int | None = None
    concurrent: int | None = None
    system: str | None = None
    project: str | None = None
    read_only: bool = False
    service: str | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: the hpcgate user name, its scopes, the token used, when
    that token expires (None: never) and what it is restricted to (None: a full token).

    A provider's token may also name the Unix ``account`` (None: as ``[users]`` says for
    ``user``), the ``projects`` its groups grant, and the OAuth ``client`` it was issued to
    (a service account is the client itself: ``user`` is ``client:<id>``)."""

    user: str
    scopes: frozenset[Scope]
    token_id: str
    expires_at: datetime | None = None
    restriction: Restriction | None = None
    account: str | None = None
    projects: frozenset[str] = frozenset()
    client: str | None = None
    #: Roles other than ``member`` the provider's groups give in some of ``projects``.
    project_roles: frozenset[tuple[str, Role]] = frozenset()

    @property
    def is_key(self) -> bool:
        """Whether the token is an API key (limited to invoking its functions)."""
        return self.restriction is not None and self.restriction.functions is not None

    @property
    def key_id(self) -> str | None:
        """The token's id if it is a key, else None."""
        return self.token_id if self.is_key else None

    @property
    def limited(self) -> bool:
        """Whether the token has any limit (a key's, a system, a project, a service,
        read-only)."""
        return self.restriction is not None

    def provider_role(self, project: str) -> Role | None:
        """The role the provider's groups give in ``project`` (None: none)."""
        if project not in self.projects:
            return None
        roles = [role for name, role in self.project_roles if name == project]
        return max(roles, key=lambda role: role.rank, default=Role.MEMBER)

    def sees_system(self, system: str) -> bool:
        """Whether the token's limits let it near ``system``."""
        limit = self.restriction
        return limit is None or limit.system is None or limit.system == system

    def sees_service(self, service: str) -> bool:
        """Whether the token's limits let it near the service called ``service``."""
        limit = self.restriction
        return limit is None or limit.service is None or limit.service == service

    def sees_project(self, project: str | None) -> bool:
        """Whether the token's limits let it near a resource of ``project`` (None: one in
        no project)."""
        limit = self.restriction
        return limit is None or limit.project is None or limit.project == project

    def may_call(self, owner: str, function: str) -> bool:
        """Whether a key's restriction lets it near ``owner``'s function (a full token: yes;
        whether the function is shared with the caller is the registry's to say)."""
        if self.restriction is None or self.restriction.functions is None:
            return True
        return owner == self.user and function in self.restriction.functions

    def may_call_in(self, qualified: str) -> bool:
        """Whether a key's restriction names the project's function ``PROJECT~NAME`` (a
        full token: yes; the caller's role in the project is the registry's to say)."""
        if self.restriction is None or self.restriction.functions is None:
            return True
        return qualified in self.restriction.functions

    def unrestricted(self) -> None:
        """Forbidden for a key: what it may not do at all (mint tokens, files, jobs ...)."""
        if self.is_key:
            raise Forbidden("this API key may only invoke its functions and read its invocations")

    def has(self, scope: Scope) -> bool:
        """Whether the token holds ``scope`` (admin holds all; a read-only token no write)."""
        if self.restriction is not None and self.restriction.read_only:
            return scope in READ_SCOPES and (scope in self.scopes or Scope.ADMIN in self.scopes)
        return scope in self.scopes or Scope.ADMIN in self.scopes

    def require(self, scope: Scope) -> None:
        if not self.has(scope):
            raise Forbidden(f"this token lacks the '{scope}' scope")
