"""``/api/v1/tokens``: a user manages their own tokens and API keys; an admin anyone's.

API keys are tokens with a restriction (``functions``), made, listed and revoked here like
any token: a key for a set of functions is not one function's sub-resource, and the
restrictions issue 18 adds (a project, a system, a service, read-only) are the token's too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from hpcgate.api.auth import Caller, GatewayDep
from hpcgate.api.consents import HELD
from hpcgate.api.problems import responses
from hpcgate.model.errors import Forbidden, NotFound
from hpcgate.model.principal import Scope
from hpcgate.model.tokens import CreatedToken, NewToken, TokenInfo

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a token or an API key",
    responses={**responses(400, 401, 403, 404, 422), **HELD},
)
async def create_token(body: NewToken, who: Caller, gateway: GatewayDep) -> CreatedToken:
    """The new token holds at most the caller's scopes (an admin's: any; without `scopes`,
    the default scopes the caller holds) and expires no later than the caller's token
    (without `expires_in`, with it). Revoking the caller's token revokes this one too.

    With `functions` it is an **API key** for those functions of its user's (each must
    exist and be theirs: 404 otherwise): it may invoke them and list, read, follow and
    cancel the invocations it started itself, and nothing else (every other route answers
    it 403; another function, 404). Its `limits`: `per_minute` requests in any 60 s and
    `concurrent` unended invocations; past either, a 429 with `Retry-After` and the
    `RateLimit-Policy`/`RateLimit` fields, and nothing done. An API key issues no tokens.

    A token holding a scope of `[consent] token_scopes` is answered **202**: its secret comes
    with a consent request, and it is refused until its user approves that request with
    another credential (`POST /api/v1/consents/{id}/approve`)."""
    created = await gateway.tokens.issue(who, body)
    await gateway.consents.check_new_token(who, created)  # 202 if held for consent
    return created


@router.get("", summary="List tokens (never their secrets)", responses=responses(401, 403))
async def list_tokens(
    who: Caller,
    gateway: GatewayDep,
    user: Annotated[str | None, Query(description="Admin only: another user's")] = None,
) -> Sequence[TokenInfo]:
    """The caller's tokens (an admin: anyone's); a limited token sees only itself."""
    if who.limited:
        return [t for t in await gateway.tokens.infos(who.user) if t.id == who.token_id]
    if who.has(Scope.ADMIN):
        return await gateway.tokens.infos(user)
    if user not in (None, who.user):
        raise Forbidden("only an admin may list other users' tokens")
    return await gateway.tokens.infos(who.user)


@router.delete(
    "/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a token and every token it issued",
    responses=responses(401, 403, 404),
)
async def revoke_token(
    who: Caller, gateway: GatewayDep, token_id: str = Path(pattern=r"^[0-9a-f]{12}$")
) -> None:
    """Revoking a token also revokes every token it issued, at any depth. A limited token
    (an API key, or one limited to a system, project or service) may revoke only itself."""
    row = await gateway.tokens.get(token_id)
    theirs = row is not None and (row.user == who.user or who.has(Scope.ADMIN))
    if not theirs or (who.limited and token_id != who.token_id):
        raise NotFound(f"no token {token_id!r}")
    await gateway.tokens.revoke(token_id)
