"""API tokens as clients see them: the record (never the secret), a request for a new one
and the answer that carries its secret once. Pure models, shared by the API and the SDK.

A token given ``functions`` is an API key: it may only invoke those functions of its
user's and read the invocations it started, within its ``limits``."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, WithJsonSchema

from hpcgate.model.bounds import CONCURRENT_MAX, LIFETIME_MAX, PER_MINUTE_MAX, MaybeNumber
from hpcgate.model.functions import KeyFunctionName
from hpcgate.model.jobs import ProjectName
from hpcgate.model.principal import DEFAULT_SCOPES, Scope
from hpcgate.model.services import QualifiedName, SystemRef


def _grantable(scope: Scope) -> Scope:
    if scope is Scope.AGENT_SERVE:
        raise ValueError("agent:serve is an agent token's scope: 'hpcgate agent-token create'")
    return scope


#: A scope a token made through the API may hold: any but an agent token's, which only the
#: server's command line gives (so the document lists exactly what is accepted).
GrantableScope = Annotated[
    Scope,
    AfterValidator(_grantable),
    WithJsonSchema({"type": "string", "enum": [s.value for s in Scope if s != Scope.AGENT_SERVE]}),
]

#: An hpcgate user name: what a token may be issued to.
USER_NAME_PATTERN = r"^[a-z_][a-z0-9_.@-]{0,63}$"


#: Functions one key may invoke.
KEY_FUNCTIONS_MAX = 64


class KeyLimits(BaseModel):
    """An API key's own limits; beyond either, its request is a 429 and changes nothing."""

    model_config = ConfigDict(extra="forbid")

    per_minute: MaybeNumber = Field(
        None, ge=1, le=PER_MINUTE_MAX, description="Requests in any 60 s (none: no limit)"
    )
    concurrent: MaybeNumber = Field(
        None, ge=1, le=CONCURRENT_MAX, description="Unended invocations at once (none: no limit)"
    )


class TokenInfo(BaseModel):
    id: str
    user: str
    scopes: list[Scope]
    description: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    functions: list[str] | None = Field(
        None, description="An API key's functions (the only ones it may invoke); none: a token"
    )
    limits: KeyLimits | None = Field(None, description="An API key's limits")
    system: str | None = Field(None, description="The one system it may be used on")
    project: str | None = Field(None, description="The one project whose jobs it sees")
    service: str | None = Field(None, description="The one service it may use")
    read_only: bool = Field(False, description="Whether it may only read (GET)")


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(
        None,
        pattern=USER_NAME_PATTERN,
        description="Whose token; default the caller (admin: anyone)",
    )
    scopes: list[GrantableScope] = Field(
        default_factory=lambda: sorted(DEFAULT_SCOPES), min_length=1
    )
    expires_in: MaybeNumber = Field(
        None,
        gt=0,
        le=LIFETIME_MAX,
        description="Lifetime in seconds; none = as long as the token that creates it",
    )
    description: str = Field("", max_length=255)
    functions: list[KeyFunctionName] | None = Field(
        None,
        min_length=1,
        max_length=KEY_FUNCTIONS_MAX,
        description="Makes the token an API key for these functions of its user's (which"
        " must exist; PROJECT~NAME: a project's, in a project its user owns, for a key the"
        " user makes for itself): it may invoke them and read, follow and cancel the"
        " invocations it started, nothing else (scopes default to jobs:read and jobs:write)",
    )
    limits: KeyLimits | None = Field(None, description="An API key's limits (needs functions)")
    system: SystemRef | None = Field(
        None,
        description="Limits the token to this configured system: every other system is"
        " unknown to it (404), and the routes that are not a system's (services, functions,"
        " /v1, usage, audit) refuse it (403)",
    )
    project: ProjectName | None = Field(
        None,
        description="Limits the token to this project: it sees only the project's jobs and"
        " services (with the role its user has there, read at each request), submits and"
        " creates into it, and every route that knows no projects (files, functions, usage)"
        " refuses it",
    )
    service: QualifiedName | None = Field(
        None,
        description="Limits the token to this service (PROJECT~NAME for a project's; its"
        " routes under /api/v1/services"
        " and its models on /v1): every other service is unknown to it, every other route"
        " refuses it (403); no system or project limit with it",
    )
    read_only: bool = Field(
        False,
        description="Limits the token to reading: every request but GET, HEAD and OPTIONS"
        " is refused (403), and it holds no write scope",
    )


class CreatedToken(TokenInfo):
    token: str = Field(description="The secret: shown only this once")
