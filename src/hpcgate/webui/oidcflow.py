"""The provider's side of the web sign-in: the web client's provider, the authorization
request, trading a code (or a refresh token) at its token endpoint, and the ID token's
check. No route here: webui/oidc.py drives it, webui/viewer.py renews with it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from hpcgate.gateway import Gateway
from hpcgate.identity.service import looks_like_jwt, unverified
from hpcgate.identity.verify import Provider
from hpcgate.model.errors import HpcgateError, NotFound, Unauthenticated, Unavailable

#: The largest token endpoint answer read (real ones are a few KiB).
ANSWER_MAX = 64 * 1024


@dataclass(frozen=True)
class Tokens:
    """What a token endpoint answered, the access token not yet checked."""

    access: str
    refresh: str | None
    id_token: str | None


def web_provider(gateway: Gateway, name: str) -> Provider:
    """The provider ``name`` if it has a web client; NotFound otherwise."""
    for provider in gateway.identity.providers:
        if provider.name == name and provider.config.web_client_id is not None:
            return provider
    raise NotFound(f"no provider {name!r} to sign in with")


def web_providers(gateway: Gateway) -> list[str]:
    return [p.name for p in gateway.identity.providers if p.config.web_client_id is not None]


def scope(provider: Provider) -> str:
    config = provider.config
    return config.web_scope or " ".join(["openid", "offline_access", *config.scopes])


def challenge(verifier: str) -> str:
    """RFC 7636's S256 code challenge of ``verifier``."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


async def authorization_url(
    provider: Provider, redirect: str, state: str, nonce: str, verifier: str
) -> str:
    endpoint = (await provider.metadata()).authorization_endpoint
    if endpoint is None:
        raise Unavailable(f"provider {provider.name!r} names no authorization endpoint")
    wanted = scope(provider)
    query = {
        "response_type": "code",
        "client_id": provider.config.web_client_id or "",
        "redirect_uri": redirect,
        "scope": wanted,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge(verifier),
        "code_challenge_method": "S256",
    }
    if "offline_access" in wanted.split():
        query["prompt"] = "consent"  # OpenID Connect: offline_access needs consent asked
    return f"{endpoint}?{urlencode(query)}"


async def trade(provider: Provider, form: dict[str, str]) -> Tokens:
    """The token endpoint's answer to ``form``, as the web client (client_secret_basic);
    Unauthenticated if it refuses."""
    config = provider.config
    endpoint = (await provider.metadata()).token_endpoint
    if endpoint is None or config.web_client_id is None or config.web_client_secret is None:
        raise Unavailable(f"provider {provider.name!r} names no token endpoint")
    auth = (config.web_client_id, config.web_client_secret.get_secret_value())
    try:
        answer = await provider.http.post(endpoint, data=form, auth=auth)
    except httpx.HTTPError as exc:
        raise Unavailable(f"provider {provider.name!r} cannot be reached: {exc}") from None
    body = _json(answer)
    if answer.status_code != 200 or not isinstance(body.get("access_token"), str):
        raise Unauthenticated(f"the provider refused: {str(body.get('error', 'no token'))[:200]}")
    refresh, id_token = body.get("refresh_token"), body.get("id_token")
    return Tokens(
        body["access_token"],
        refresh if isinstance(refresh, str) else None,
        id_token if isinstance(id_token, str) else None,
    )


def _json(answer: httpx.Response) -> dict[str, Any]:
    if len(answer.content) > ANSWER_MAX:
        return {"error": "an answer too large"}
    try:
        body = answer.json()
    except ValueError:
        return {"error": "not JSON"}
    return body if isinstance(body, dict) else {"error": "not a JSON object"}


async def check_id_token(provider: Provider, id_token: str | None, nonce: str) -> dict[str, Any]:
    """The ID token's claims if it verifies with the provider's keys, was issued to the web
    client and carries this sign-in's ``nonce``; Unauthenticated otherwise."""
    if id_token is None or not looks_like_jwt(id_token):
        raise Unauthenticated("the provider sent no ID token")
    header, _ = unverified(id_token)
    claims = await provider.verify(id_token, header, audience=provider.config.web_client_id)
    presented = claims.get("nonce")
    if not isinstance(presented, str) or not hmac.compare_digest(
        presented.encode(), nonce.encode()
    ):
        raise Unauthenticated("the ID token is not this sign-in's (nonce)")
    return claims


def same_subject(id_claims: dict[str, Any], access_token: str) -> None:
    """The access token (already verified) is the ID token's user's."""
    subject = unverified(access_token)[1].get("sub") if looks_like_jwt(access_token) else None
    if subject is not None and subject != id_claims.get("sub"):
        raise Unauthenticated("the access token is another user's than the ID token")


async def renew(provider: Provider, refresh: str) -> Tokens:
    """New tokens for a refresh token (the provider may rotate it)."""
    tokens = await trade(provider, {"grant_type": "refresh_token", "refresh_token": refresh})
    return Tokens(tokens.access, tokens.refresh or refresh, tokens.id_token)


async def revoke(provider: Provider, refresh: str) -> bool:
    """Ask the provider to revoke a refresh token (RFC 7009) as the web client: whether it
    said yes. A provider that cannot be reached or has no revocation endpoint: False."""
    config = provider.config
    if config.web_client_id is None or config.web_client_secret is None:
        return False
    try:
        endpoint = (await provider.metadata()).revocation_endpoint
        if endpoint is None:
            return False
        auth = (config.web_client_id, config.web_client_secret.get_secret_value())
        form = {"token": refresh, "token_type_hint": "refresh_token"}
        answer = await provider.http.post(endpoint, data=form, auth=auth)
    except (httpx.HTTPError, HpcgateError):
        return False
    return answer.status_code == 200


def random_value() -> str:
    return secrets.token_urlsafe(32)
