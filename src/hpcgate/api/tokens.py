"""``/api/v1/tokens``: a user manages their own tokens; an admin manages anyone's."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, status

from hpcgate.api.auth import Caller, GatewayDep
from hpcgate.api.problems import responses
from hpcgate.model.errors import Forbidden, NotFound
from hpcgate.model.principal import Principal, Scope
from hpcgate.model.tokens import CreatedToken, NewToken, TokenInfo
from hpcgate.store.tables import TokenRow

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


def _info(row: TokenRow) -> TokenInfo:
    return TokenInfo(
        id=row.id,
        user=row.user,
        scopes=sorted(Scope(s) for s in row.scopes.split(",")),
        description=row.description,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def _may_issue(who: Principal, user: str, scopes: set[Scope]) -> None:
    if who.has(Scope.ADMIN):
        return
    if user != who.user or not scopes <= who.scopes:
        raise Forbidden("only an admin may issue tokens for others or with more scopes")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create a token",
    responses=responses(400, 401, 403, 422),
)
async def create_token(body: NewToken, who: Caller, gateway: GatewayDep) -> CreatedToken:
    user = body.user or who.user
    _may_issue(who, user, set(body.scopes))
    lifetime = timedelta(seconds=body.expires_in) if body.expires_in else None
    issued = await gateway.tokens.create(user, frozenset(body.scopes), lifetime, body.description)
    row = await gateway.tokens.get(issued.id)
    assert row is not None
    return CreatedToken(**_info(row).model_dump(), token=issued.secret)


@router.get("", summary="List tokens (never their secrets)", responses=responses(401, 403))
async def list_tokens(
    who: Caller,
    gateway: GatewayDep,
    user: Annotated[str | None, Query(description="Admin only: another user's")] = None,
) -> list[TokenInfo]:
    if who.has(Scope.ADMIN):
        return [_info(row) for row in await gateway.tokens.list(user)]
    if user not in (None, who.user):
        raise Forbidden("only an admin may list other users' tokens")
    return [_info(row) for row in await gateway.tokens.list(who.user)]


@router.delete(
    "/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke a token",
    responses=responses(401, 403, 404),
)
async def revoke_token(
    who: Caller, gateway: GatewayDep, token_id: str = Path(pattern=r"^[0-9a-f]{12}$")
) -> None:
    row = await gateway.tokens.get(token_id)
    if row is None or (row.user != who.user and not who.has(Scope.ADMIN)):
        raise NotFound(f"no token {token_id!r}")
    await gateway.tokens.revoke(token_id)
