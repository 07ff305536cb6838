"""API tokens: random secrets shown once, stored as SHA-256 hashes, scoped, expiring.

A token reads ``hpcg_<id>_<secret>``. The id finds the row; the secret is compared by hash
in constant time. The secret has 256 bits of entropy, so a fast hash is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from hpcgate.clock import utcnow
from hpcgate.coalesce import Coalesced
from hpcgate.model.errors import BadRequest, NotFound, Unauthenticated
from hpcgate.model.principal import DEFAULT_SCOPES, Principal, Scope
from hpcgate.store.tables import TokenRow
from hpcgate.store.tokens import TokenStore

_TOKEN = re.compile(r"^hpcg_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
USER_NAME = re.compile(r"^[a-z_][a-z0-9_.@-]{0,63}$")


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly created token: the secret text exists only here."""

    id: str
    user: str
    scopes: frozenset[Scope]
    expires_at: datetime | None
    secret: str


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def parse_scopes(names: Iterable[str]) -> frozenset[Scope]:
    try:
        return frozenset(Scope(name) for name in names)
    except ValueError as exc:
        known = ", ".join(scope.value for scope in Scope)
        raise BadRequest(f"unknown scope ({exc}); known scopes: {known}") from None


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token row as last read from the store, kept for a few seconds."""

    row: TokenRow
    read_at: float


class TokenService:
    """Creates, lists, revokes and verifies tokens.

    Verified token rows are cached for ``cache_seconds`` so that a request costs no database
    read for its token. A revoke through this service evicts at once; a revoke by another
    process on this host touches ``revocation_marker``, which is checked on every request
    (one ``stat``); another gateway replica notices within ``cache_seconds``.
    """

    def __init__(
        self, store: TokenStore, revocation_marker: Path | None = None, cache_seconds: float = 5
    ) -> None:
        self._store = store
        self._marker = revocation_marker
        self._ttl = cache_seconds
        self._cache: dict[str, _Verified] = {}
        self._loads: Coalesced[str, TokenRow | None] = Coalesced()
        self._marker_seen: float | None = None

    async def create(
        self,
        user: str,
        scopes: frozenset[Scope] = DEFAULT_SCOPES,
        lifetime: timedelta | None = None,
        description: str = "",
    ) -> IssuedToken:
        if not USER_NAME.match(user):
            raise BadRequest(f"invalid user name {user!r}")
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        expires = utcnow() + lifetime if lifetime is not None else None
        row = TokenRow(
            id=token_id,
            user=user,
            secret_hash=_hash(secret),
            description=description,
            scopes=",".join(sorted(scopes)),
            expires_at=expires,
        )
        await self._store.add(row)
        return IssuedToken(token_id, user, scopes, expires, f"hpcg_{token_id}_{secret}")

    async def list(self, user: str | None = None) -> list[TokenRow]:
        return await self._store.find(user)

    async def get(self, token_id: str) -> TokenRow | None:
        return await self._store.get(token_id)

    async def revoke(self, token_id: str) -> None:
        if not await self._store.revoke(token_id, utcnow()):
            raise NotFound(f"no active token with id {token_id!r}")
        self._cache.pop(token_id, None)
        if self._marker is not None:
            self._marker.touch()

    async def authenticate(self, presented: str) -> Principal:
        """The principal behind a bearer token; Unauthenticated for anything else."""
        match = _TOKEN.match(presented)
        row = await self._row(match.group(1)) if match else None
        if match is None or row is None:
            raise Unauthenticated("invalid token")
        if not hmac.compare_digest(row.secret_hash, _hash(match.group(2))):
            raise Unauthenticated("invalid token")
        if row.revoked_at is not None:
            raise Unauthenticated("token revoked")
        if row.expires_at is not None and row.expires_at <= utcnow():
            raise Unauthenticated("token expired")
        return Principal(row.user, parse_scopes(row.scopes.split(",")), row.id)

    async def _row(self, token_id: str) -> TokenRow | None:
        self._forget_if_revoked_elsewhere()
        now = time.monotonic()
        cached = self._cache.get(token_id)
        if cached is not None and now - cached.read_at < self._ttl:
            return cached.row
        row = await self._loads.load(token_id, lambda: self._store.get(token_id))
        if row is None:
            self._cache.pop(token_id, None)
        else:
            self._cache[token_id] = _Verified(row, now)
        return row

    def _forget_if_revoked_elsewhere(self) -> None:
        if self._marker is None:
            return
        try:
            stamp = self._marker.stat().st_mtime
        except FileNotFoundError:
            stamp = None
        if stamp != self._marker_seen:
            self._cache.clear()
            self._marker_seen = stamp
