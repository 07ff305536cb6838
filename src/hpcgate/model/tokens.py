"""API tokens as clients see them: the record (never the secret), a request for a new one
and the answer that carries its secret once. Pure models, shared by the API and the SDK."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from hpcgate.model.bounds import LIFETIME_MAX, MaybeNumber
from hpcgate.model.principal import DEFAULT_SCOPES, Scope

#: An hpcgate user name: what a token may be issued to.
USER_NAME_PATTERN = r"^[a-z_][a-z0-9_.@-]{0,63}$"


class TokenInfo(BaseModel):
    id: str
    user: str
    scopes: list[Scope]
    description: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


class NewToken(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user: str | None = Field(
        None,
        pattern=USER_NAME_PATTERN,
        description="Whose token; default the caller (admin: anyone)",
    )
    scopes: list[Scope] = Field(default_factory=lambda: sorted(DEFAULT_SCOPES), min_length=1)
    expires_in: MaybeNumber = Field(
        None,
        gt=0,
        le=LIFETIME_MAX,
        description="Lifetime in seconds; none = as long as the token that creates it",
    )
    description: str = Field("", max_length=255)


class CreatedToken(TokenInfo):
    token: str = Field(description="The secret: shown only this once")
