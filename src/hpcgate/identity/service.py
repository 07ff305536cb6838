"""Bearer tokens of trusted OpenID providers: which provider, checked how, cached how long.

A JWT is routed by its (unverified) ``iss`` to the provider configured with exactly that
issuer, which then verifies it; an opaque token goes to the providers that introspect.
What was verified is cached by the token's SHA-256 (never the token itself) until it
expires, at most five minutes (an introspected token 30 s), in a bounded LRU: a cached
token costs one hash and one dictionary lookup.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from hpcgate.config import OidcIssuer
from hpcgate.identity.introspection import introspect
from hpcgate.identity.verify import Claims, Provider
from hpcgate.model.errors import Unauthenticated, Unavailable
from hpcgate.model.principal import Principal

MAX_TOKEN_CHARS = 16 * 1024
_JWT = re.compile(r"^[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*$")
_MAX_CACHED = 10_000
_CACHE_SECONDS = 300.0
_INTROSPECTED_SECONDS = 30.0
_TIMEOUT = httpx.Timeout(5.0)


def looks_like_jwt(token: str) -> bool:
    return len(token) <= MAX_TOKEN_CHARS and _JWT.fullmatch(token) is not None


def _segment(text: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A JWT's header and claims as written, before anything is checked: only to pick
    the provider and the key that will check them."""
    header, payload, _ = token.split(".")
    try:
        parsed = _segment(header), _segment(payload)
    except (binascii.Error, ValueError):
        raise Unauthenticated("the token is not a well-formed JWT") from None
    if not all(isinstance(part, dict) for part in parsed):
        raise Unauthenticated("the token is not a well-formed JWT")
    return parsed


@dataclass(frozen=True, slots=True)
class _Verified:
    principal: Principal
    until: float


class Identity:
    """The trusted providers of ``[auth.oidc]``. Construction does no I/O; ``http`` (made
    here unless a test injects one) is closed by :meth:`close`."""

    def __init__(
        self,
        issuers: Mapping[str, OidcIssuer],
        http: httpx.AsyncClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if http is None and issuers:
            http = httpx.AsyncClient(timeout=_TIMEOUT)
        self._http = http
        self.providers = [Provider(name, c, http) for name, c in issuers.items() if http]
        self._by_issuer = {p.config.issuer: p for p in self.providers}
        self._introspecting = [p for p in self.providers if p.config.introspection_client_id]
        self._clock = clock
        self._cache: OrderedDict[str, _Verified] = OrderedDict()

    def handles(self, token: str) -> bool:
        """Whether ``token`` is for a provider rather than hpcgate's own tokens."""
        if not self.providers:
            return False
        return looks_like_jwt(token) or (bool(self._introspecting) and not token.startswith("hpcg"))

    async def authenticate(self, token: str) -> Principal:
        """The principal behind a provider's token; Unauthenticated for anything else."""
        digest = hashlib.sha256(token.encode()).hexdigest()
        hit = self._cache.get(digest)
        if hit is not None and self._clock() < hit.until:
            self._cache.move_to_end(digest)
            return hit.principal
        principal, seconds = await self._verify(token, f"oidc:{digest[:16]}")
        self._remember(digest, principal, seconds)
        return principal

    def _remember(self, digest: str, principal: Principal, seconds: float) -> None:
        until = self._clock() + seconds
        if principal.expires_at is not None:
            until = min(until, principal.expires_at.timestamp())
        self._cache[digest] = _Verified(principal, until)
        self._cache.move_to_end(digest)
        while len(self._cache) > _MAX_CACHED:
            self._cache.popitem(last=False)

    async def _verify(self, token: str, token_id: str) -> tuple[Principal, float]:
        """The principal, and how long it may be cached: a JWT until it expires, at most
        five minutes; an introspected token briefly, so a revocation shows soon."""
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated(f"a token is at most {MAX_TOKEN_CHARS} characters")
        if looks_like_jwt(token):
            provider, verified = await self._jwt(token)
            seconds = _CACHE_SECONDS
        else:
            provider, verified = await self._opaque(token)
            seconds = _INTROSPECTED_SECONDS
        return provider.mapping.principal(verified, token_id), seconds

    async def _jwt(self, token: str) -> tuple[Provider, Claims]:
        header, claims = unverified(token)
        issuer = claims.get("iss")
        provider = self._by_issuer.get(issuer) if isinstance(issuer, str) else None
        if provider is None:
            raise Unauthenticated("the token's issuer is not trusted")
        return provider, await provider.verify(token, header)

    async def _opaque(self, token: str) -> tuple[Provider, Claims]:
        failure: Unauthenticated | Unavailable = Unauthenticated("invalid token")
        for provider in self._introspecting:
            try:
                return provider, await introspect(provider, token)
            except (Unauthenticated, Unavailable) as exc:
                failure = exc
        raise failure

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()
