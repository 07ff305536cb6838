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


@dataclass(frozen=True, slots=True)
class Restriction:
    """What a restricted token (an API key) is limited to: invoking these functions of its
    user's (and reading the invocations it started), at most ``per_minute`` requests in
    any minute and ``concurrent`` unended invocations at once (None: no such limit)."""

    functions: frozenset[str]
    per_minute: int | None = None
    concurrent: int | None = None


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

    @property
    def key_id(self) -> str | None:
        """The token's id if it is a key (restricted), else None."""
        return None if self.restriction is None else self.token_id

    def may_call(self, owner: str, function: str) -> bool:
        """Whether a key's restriction lets it near ``owner``'s function (a full token: yes;
        whether the function is shared with the caller is the registry's to say)."""
        if self.restriction is None:
            return True
        return owner == self.user and function in self.restriction.functions

    def unrestricted(self) -> None:
        """Forbidden for a key: what it may not do at all (mint tokens, files, jobs ...)."""
        if self.restriction is not None:
            raise Forbidden("this API key may only invoke its functions and read its invocations")

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes

    def require(self, scope: Scope) -> None:
        if not self.has(scope):
            raise Forbidden(f"this token lacks the '{scope}' scope")
