"""``/api/v1/auth/providers``: where a command line logs in (no token needed: it has none yet)."""

from __future__ import annotations

from fastapi import APIRouter

from hpcgate.api.auth import GatewayDep
from hpcgate.config import OidcIssuer
from hpcgate.model.login import LoginProvider

router = APIRouter(prefix="/api/v1/auth", tags=["status"])


@router.get("/providers", summary="The OpenID providers to log in through (no token needed)")
async def providers(gateway: GatewayDep) -> list[LoginProvider]:
    """The trusted providers that name a public client for the command line
    (``cli_client_id``): ``hpcgate login --oidc`` reads the issuer's discovery document,
    runs the device authorization flow (RFC 8628) with that client, and sends the access
    token it gets as a bearer token. Public: it says nothing the providers' own discovery
    documents and the OpenAPI document do not."""
    oidc = gateway.settings.auth.oidc
    return [_provider(name, c) for name, c in oidc.items() if c.cli_client_id is not None]


def _provider(name: str, config: OidcIssuer) -> LoginProvider:
    scope = config.cli_scope or " ".join(["openid", "offline_access", *config.scopes])
    return LoginProvider(
        name=name, issuer=config.issuer, client_id=config.cli_client_id or "", scope=scope
    )
