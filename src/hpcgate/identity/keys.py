"""A provider's signing keys (its JWKS), fetched once and again when a token names a key
that is not known yet: how a key rotation is picked up without a restart.

Refetches are rate-limited (a flood of made-up key ids costs the provider one request per
interval), and a failed refetch keeps the keys already known: an outage of the provider's
JWKS endpoint does not stop tokens signed with them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, OKPKey, RSAKey

from hpcgate.coalesce import Coalesced
from hpcgate.model.errors import HpcgateError

log = logging.getLogger(__name__)

Key = RSAKey | ECKey | OKPKey
Fetch = Callable[[], Awaitable[dict[str, Any]]]

# Which key an algorithm verifies with: its key type and, for EC and OKP, its curve.
_KEY_FOR = {
    **{f"{kind}{bits}": ("RSA", None) for kind in ("RS", "PS") for bits in (256, 384, 512)},
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}


def fits(key: Key, alg: str) -> bool:
    """Whether ``key`` may verify a signature made with ``alg``: its type (and curve) is
    the algorithm's, and the key, if it names an algorithm or a use, names these."""
    kty, curve = _KEY_FOR.get(alg, (None, None))
    if key.key_type != kty or (curve is not None and key.get("crv") != curve):
        return False
    return key.get("alg", alg) == alg and key.get("use", "sig") == "sig"


def _usable(document: dict[str, Any]) -> dict[str, Key]:
    """The signing keys of a JWKS by key id; keys that cannot be read are left out."""
    keys: dict[str, Key] = {}
    entries = document.get("keys")
    for entry in entries if isinstance(entries, list) else []:
        try:
            key = KeySet.import_key_set({"keys": [entry]}).keys[0]
        except (JoseError, ValueError, TypeError, KeyError):
            continue
        if isinstance(key, RSAKey | ECKey | OKPKey):
            keys[key.kid or key.thumbprint()] = key
    return keys


class KeyCache:
    """One provider's keys by id. ``fetch`` reads the JWKS document; ``refetch_seconds``
    is the shortest time between two reads; ``clock`` is injected by tests."""

    def __init__(
        self,
        fetch: Fetch,
        refetch_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._interval = refetch_seconds
        self._clock = clock
        self._keys: dict[str, Key] = {}
        self._fetched_at: float | None = None
        self._loads: Coalesced[str, None] = Coalesced()

    async def get(self, kid: str) -> Key | None:
        """The key ``kid``, refetching the set if it is unknown and the interval allows."""
        key = self._keys.get(kid)
        if key is None and self._may_refetch():
            await self._loads.load("jwks", self._refresh)
            key = self._keys.get(kid)
        return key

    async def all(self) -> list[Key]:
        """Every known key (fetched first if none is known yet)."""
        if not self._keys and self._may_refetch():
            await self._loads.load("jwks", self._refresh)
        return list(self._keys.values())

    def _may_refetch(self) -> bool:
        last = self._fetched_at
        return last is None or self._clock() - last >= self._interval

    async def _refresh(self) -> None:
        self._fetched_at = self._clock()
        try:
            keys = _usable(await self._fetch())
        except HpcgateError as exc:
            log.warning("keeping %d known keys: %s", len(self._keys), exc)
            return
        if keys:
            self._keys = keys
