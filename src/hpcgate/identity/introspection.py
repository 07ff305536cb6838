"""RFC 7662 token introspection: a provider says whether an opaque token is active.

The answer is trusted as the provider's own (it comes over the connection hpcgate opened to
the provider's introspection endpoint, authenticated as hpcgate's client), and held to the
same rules as a JWT's claims: this issuer, this audience, not expired.
"""

from __future__ import annotations

import time
from typing import Any

import httpx

from hpcgate.identity.verify import Claims, Provider
from hpcgate.model.errors import Unauthenticated, Unavailable


async def introspect(provider: Provider, token: str) -> Claims:
    """The claims of an active ``token``; Unauthenticated if the provider says it is not
    (or not for hpcgate), Unavailable if the provider cannot be asked."""
    config = provider.config
    endpoint = (await provider.metadata()).introspection_endpoint
    if endpoint is None or config.introspection_client_secret is None:
        raise Unauthenticated("invalid token")
    secret = config.introspection_client_secret.get_secret_value()
    auth = httpx.BasicAuth(config.introspection_client_id or "", secret)
    return _checked(await _post(provider, endpoint, token, auth), provider)


async def _post(provider: Provider, endpoint: str, token: str, auth: httpx.Auth) -> Any:
    try:
        response = await provider.http.post(
            endpoint, data={"token": token, "token_type_hint": "access_token"}, auth=auth
        )
        response.raise_for_status()
        return response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise Unavailable(f"provider {provider.name!r} cannot introspect: {exc}") from None


def _checked(answer: Any, provider: Provider) -> Claims:
    config, now = provider.config, time.time()
    if not isinstance(answer, dict) or answer.get("active") is not True:
        raise Unauthenticated("invalid token")
    audience = answer.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if answer.get("iss", config.issuer) != config.issuer or config.audience not in audiences:
        raise Unauthenticated("the token is not for hpcgate")
    expires = answer.get("exp")
    if not isinstance(expires, int | float) or expires <= now - config.clock_skew:
        raise Unauthenticated("token expired")
    return answer
