"""``/api/v1/agent-tokens``: an admin makes, lists and revokes the tokens outbound agents
serve systems with (the same as ``hpcgate agent-token``). Admin scope only: no other
token, and no API key, can mint one. A revoke cuts the token's agents within a second."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, Path, status

from hpcgate.api.auth import Caller, GatewayDep
from hpcgate.api.problems import responses
from hpcgate.model.agent_tokens import AgentTokenInfo, CreatedAgentToken, NewAgentToken
from hpcgate.model.errors import Forbidden, Invalid, NotFound
from hpcgate.model.principal import Principal, Scope
from hpcgate.store.tables import TokenRow

router = APIRouter(prefix="/api/v1/agent-tokens", tags=["agents"])


def _admin(who: Principal) -> None:
    if not who.has(Scope.ADMIN):
        raise Forbidden("agent tokens are an admin's: this token lacks the 'admin' scope")


def _info(row: TokenRow) -> AgentTokenInfo:
    return AgentTokenInfo(
        id=row.id,
        system=row.system or "",
        user=row.agent_user,
        description=row.description,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Create an agent token (admin)",
    responses=responses(401, 403, 404, 422),
)
async def create_agent_token(
    body: NewAgentToken, who: Caller, gateway: GatewayDep
) -> CreatedAgentToken:
    """A token that lets one `hpcgate-agent` serve `system` over
    `/api/v1/agent/connect`, and authenticates nothing else. The secret is in `token`, this
    once. With `user`, only an agent that says it is that user's may use it (an agent
    claiming root, or another user, is cut at once). A system that is not configured here
    with `transport = "agent"`: 422 (a 404 only if the token was revoked and purged
    before this answer)."""
    _admin(who)
    if not any(c.name == body.system and c.config.transport == "agent" for c in gateway.systems):
        raise Invalid(f"no system {body.system!r} with transport = 'agent'")
    issued = await gateway.tokens.create_agent(body.system, body.description, body.user)
    row = await gateway.tokens.get(issued.id)
    if row is None:  # just written: only a concurrent revoke-and-purge could do this
        raise NotFound(f"agent token {issued.id!r} is gone")
    return CreatedAgentToken(**_info(row).model_dump(), token=issued.secret)


@router.get(
    "", summary="List agent tokens (admin; never their secrets)", responses=responses(401, 403)
)
async def list_agent_tokens(who: Caller, gateway: GatewayDep) -> Sequence[AgentTokenInfo]:
    """Every agent token, revoked ones included (with `revoked_at`)."""
    _admin(who)
    return [_info(row) for row in await gateway.tokens.list() if row.system is not None]


@router.delete(
    "/{token_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Revoke an agent token (admin)",
    responses=responses(401, 403, 404),
)
async def revoke_agent_token(
    who: Caller, gateway: GatewayDep, token_id: str = Path(pattern=r"^[0-9a-f]{12}$")
) -> None:
    """Its agents are cut within a second (each connection checks its token twice a
    second) and their reconnects are refused (401); requests they were running fail as
    outcome unknown (503). An id that is no live agent token: 404."""
    _admin(who)
    row = await gateway.tokens.get(token_id)
    if row is None or row.system is None or row.revoked_at is not None:
        raise NotFound(f"no live agent token {token_id!r}")
    await gateway.tokens.revoke(token_id)
