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
class Principal:
    """An authenticated caller: the hpcgate user name, its scopes, the token used and when
    that token expires (None: never)."""

    user: str
    scopes: frozenset[Scope]
    token_id: str
    expires_at: datetime | None = None

    def has(self, scope: Scope) -> bool:
        return scope in self.scopes or Scope.ADMIN in self.scopes

    def require(self, scope: Scope) -> None:
        if not self.has(scope):
            raise Forbidden(f"this token lacks the '{scope}' scope")
