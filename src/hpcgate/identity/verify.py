"""One trusted provider: its metadata, its keys, and the check of a JWT it signed.

A token is accepted only if its header names an algorithm of the provider's allow-list
(never ``none`` or HS*: the configuration cannot even name them), its key id names a key
of the provider's JWKS whose type fits that algorithm, the signature verifies, and ``iss``,
``aud``, ``exp``, ``nbf`` and ``iat`` hold with the configured leeway.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError

from hpcgate.coalesce import Coalesced
from hpcgate.config import OidcIssuer
from hpcgate.identity.claims import Mapping
from hpcgate.identity.discovery import Metadata, discover, fetch_json
from hpcgate.identity.keys import Key, KeyCache, fits
from hpcgate.model.errors import HpcgateError, Unauthenticated

Claims = dict[str, Any]


class Provider:
    """A trusted provider named ``name`` in ``[auth.oidc]``. Construction does no I/O: the
    discovery document is read when a first token names this issuer, and again (at most
    once per ``jwks_refetch_seconds``) while reading it fails."""

    def __init__(
        self,
        name: str,
        config: OidcIssuer,
        http: httpx.AsyncClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.config = config
        self.http = http
        self._clock = clock
        self._metadata: Metadata | None = None
        self._failure: tuple[float, HpcgateError] | None = None
        self._discoveries: Coalesced[str, Metadata] = Coalesced()
        self.keys = KeyCache(self._fetch_jwks, config.jwks_refetch_seconds, clock)
        self.mapping = Mapping(config)  # the rules compile here, when the gateway starts

    async def metadata(self) -> Metadata:
        """The discovery document (Unavailable while the provider cannot be read)."""
        if self._metadata is not None:
            return self._metadata
        if self._failure is not None:
            failed_at, error = self._failure
            if self._clock() - failed_at < self.config.jwks_refetch_seconds:
                raise error
        return await self._discoveries.load("metadata", self._discover)

    async def _discover(self) -> Metadata:
        try:
            self._metadata = await discover(self.http, self.config.issuer)
        except HpcgateError as exc:
            self._failure = (self._clock(), exc)
            raise
        return self._metadata

    async def _fetch_jwks(self) -> dict[str, Any]:
        url = (await self.metadata()).jwks_uri
        return await fetch_json(self.http, url, f"the keys of provider {self.name!r}")

    async def verify(
        self, token: str, header: dict[str, Any], audience: str | None = None
    ) -> Claims:
        """The claims of ``token`` (whose unverified ``header`` the caller parsed), or
        Unauthenticated saying what failed. ``audience``: another than the configured one
        (an ID token's, which names the client it was issued to)."""
        await self.metadata()  # Unavailable, not "unknown key", while it cannot be read
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.config.algorithms:
            raise Unauthenticated(f"the token's algorithm {alg!r} is not accepted")
        key = await self._key(header.get("kid"), alg)
        try:
            claims = jwt.decode(token, key, algorithms=[alg]).claims
            self._registry(audience or self.config.audience).validate(claims)
        except JoseError as exc:
            reason = exc.description or exc.error.replace("_", " ")
            raise Unauthenticated(f"invalid token: {reason}") from None
        return claims

    async def _key(self, kid: object, alg: str) -> Key:
        if isinstance(kid, str):
            key = await self.keys.get(kid)
            candidates = [key] if key is not None else []
        else:  # no key id: only a provider with a single key of the type is unambiguous
            candidates = await self.keys.all()
        fitting = [key for key in candidates if fits(key, alg)]
        if len(fitting) != 1:
            raise Unauthenticated("the token's signing key is not one of the provider's")
        return fitting[0]

    def _registry(self, audience: str) -> jwt.JWTClaimsRegistry:
        return jwt.JWTClaimsRegistry(
            leeway=self.config.clock_skew,
            iss={"essential": True, "value": self.config.issuer},
            aud={"essential": True, "value": audience},
            exp={"essential": True},
        )
