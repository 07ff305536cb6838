"""API tokens: random secrets shown once, stored as SHA-256 hashes, scoped, expiring.

A token reads ``hpcg_<id>_<secret>``. The id finds the row; the secret is compared by hash
in constant time. The secret has 256 bits of entropy, so a fast hash is enough.

A token issued through the API by another token (its parent) holds at most its parent's
scopes and expires no later than its parent; revoking a token revokes every token issued
from it, at any depth, so a leaked token cannot leave descendants behind.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from hpcgate.clock import utcnow
from hpcgate.coalesce import Coalesced
from hpcgate.model.errors import BadRequest, Forbidden, NotFound, Unauthenticated
from hpcgate.model.principal import DEFAULT_SCOPES, Principal, Scope
from hpcgate.model.tokens import USER_NAME_PATTERN, CreatedToken, NewToken, TokenInfo
from hpcgate.store.tables import TokenRow
from hpcgate.store.tokens import TokenStore

_TOKEN = re.compile(r"^hpcg_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
USER_NAME = re.compile(USER_NAME_PATTERN)
# Entries in the verified-token cache, unknown ids included: bounded against id spraying.
_MAX_CACHED = 10_000

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A freshly created token: the secret text exists only here."""

    id: str
    user: str
    scopes: frozenset[Scope]
    expires_at: datetime | None
    secret: str


def secret_digest(secret: str) -> str:
    """The stored form of a token's secret."""
    return hashlib.sha256(secret.encode()).hexdigest()


# Compared against when the id is unknown, so that path costs what a wrong secret costs.
_NO_TOKEN_DIGEST = secret_digest(secrets.token_urlsafe(32))


def parse_scopes(names: Iterable[str]) -> frozenset[Scope]:
    try:
        return frozenset(Scope(name) for name in names)
    except ValueError as exc:
        known = ", ".join(scope.value for scope in Scope)
        raise BadRequest(f"unknown scope ({exc}); known scopes: {known}") from None


@dataclass(frozen=True, slots=True)
class AgentGrant:
    """What an agent token lets its bearer do: serve ``system``."""

    token_id: str
    system: str


AGENT_USER = "hpcgate-agent"  # the user name agent tokens are listed under


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token row (None: no such id) as last read from the store, kept for a few seconds."""

    row: TokenRow | None
    read_at: float


def render(row: TokenRow) -> TokenInfo:
    """A stored token as clients see it; ValueError if the row cannot be shown."""
    return TokenInfo(
        id=row.id,
        user=row.user,
        scopes=sorted(Scope(s) for s in row.scopes.split(",")),
        description=row.description,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
    )


def _child_expiry(parent: Principal, lifetime: timedelta | None) -> datetime | None:
    """When a token issued by ``parent`` expires: as asked, and never after its parent."""
    wanted = utcnow() + lifetime if lifetime is not None else None
    if parent.expires_at is None:
        return wanted
    if wanted is None:
        return parent.expires_at
    if wanted > parent.expires_at:
        left = max(0, int((parent.expires_at - utcnow()).total_seconds()))
        raise Forbidden(
            f"a token cannot outlive the token that issues it: expires_in at most {left}"
        )
    return wanted


def _check_issuer(parent: Principal, user: str, scopes: frozenset[Scope]) -> None:
    if parent.has(Scope.ADMIN):
        return
    if user != parent.user or not scopes <= parent.scopes:
        raise Forbidden("only an admin may issue tokens for others or with more scopes")


class TokenService:
    """Creates, lists, revokes and verifies tokens.

    Verified token rows are cached for ``cache_seconds`` so that a request costs no database
    read for its token. A revoke through this service evicts at once; a revoke by another
    process on this host touches ``revocation_marker``, which is checked on every request
    (one ``stat``); another gateway replica notices within ``cache_seconds``.

    Unknown ids are cached too, and an unknown id is checked against a stand-in hash: a
    guessed id costs what a known id with a wrong secret costs, so timing tells nothing.
    ``digest`` hashes secrets (injected by tests, to count that both paths hash).
    """

    def __init__(
        self,
        store: TokenStore,
        revocation_marker: Path | None = None,
        cache_seconds: float = 5,
        digest: Callable[[str], str] = secret_digest,
    ) -> None:
        self._store = store
        self._marker = revocation_marker
        self._ttl = cache_seconds
        self._digest = digest
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
        """A token made by the CLI or at first start: no parent, any scopes, any expiry."""
        expires = utcnow() + lifetime if lifetime is not None else None
        issued, _ = await self._add(user, scopes, expires, description, None)
        return issued

    async def issue(self, parent: Principal, request: NewToken) -> CreatedToken:
        """A token made by ``parent`` through the API, bound by what the parent holds."""
        user, scopes = request.user or parent.user, frozenset(request.scopes)
        if "scopes" not in request.model_fields_set:  # the defaults the parent holds
            scopes = frozenset(scope for scope in scopes if parent.has(scope))
        _check_issuer(parent, user, scopes)
        lifetime = timedelta(seconds=request.expires_in) if request.expires_in else None
        expires = _child_expiry(parent, lifetime)
        issued, info = await self._add(user, scopes, expires, request.description, parent.token_id)
        return CreatedToken(**info.model_dump(), token=issued.secret)

    async def _add(
        self,
        user: str,
        scopes: frozenset[Scope],
        expires: datetime | None,
        description: str,
        parent_id: str | None,
        system: str | None = None,
    ) -> tuple[IssuedToken, TokenInfo]:
        if not USER_NAME.fullmatch(user):  # fullmatch: '$' alone would take 'alice\n'
            raise BadRequest(f"invalid user name {user!r}")
        if not scopes:
            raise BadRequest("a token needs at least one scope")
        if Scope.AGENT_SERVE in scopes and system is None:
            raise BadRequest("agent:serve is an agent token's scope: 'hpcgate agent-token create'")
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        row = TokenRow(
            id=token_id,
            user=user,
            secret_hash=self._digest(secret),
            description=description,
            scopes=",".join(sorted(scopes)),
            created_at=utcnow(),
            expires_at=expires,
            parent_id=parent_id,
            system=system,
        )
        info = render(row)  # before storing: never store a row that reading cannot show
        await self._store.add(row)
        self._cache.pop(token_id, None)
        return IssuedToken(token_id, user, scopes, expires, f"hpcg_{token_id}_{secret}"), info

    async def create_agent(self, system: str, description: str = "") -> IssuedToken:
        """A token that lets one agent serve ``system`` (and does nothing else)."""
        scopes = frozenset({Scope.AGENT_SERVE})
        issued, _ = await self._add(AGENT_USER, scopes, None, description, None, system)
        return issued

    async def list(self, user: str | None = None) -> list[TokenRow]:
        return await self._store.find(user)

    async def infos(self, user: str | None = None) -> Sequence[TokenInfo]:
        """The tokens as clients see them; a row that cannot be shown is skipped and logged,
        so that one bad row never hides the others."""
        shown: list[TokenInfo] = []
        for row in await self._store.find(user):
            try:
                shown.append(render(row))
            except ValueError as exc:
                log.error("token %s cannot be shown and is left out of lists: %s", row.id, exc)
        return shown

    async def get(self, token_id: str) -> TokenRow | None:
        return await self._store.get(token_id)

    async def revoke(self, token_id: str) -> None:
        """Revoke a token and every token issued from it."""
        revoked = await self._store.revoke(token_id, utcnow())
        if not revoked:
            raise NotFound(f"no active token with id {token_id!r}")
        for gone in revoked:
            self._cache.pop(gone, None)
        if self._marker is not None:
            self._marker.touch()

    async def authenticate(self, presented: str) -> Principal:
        """The principal behind a bearer token; Unauthenticated for anything else (an agent
        token included: it is good only for :meth:`authenticate_agent`)."""
        row = await self._verified(presented)
        if row.system is not None:
            raise Unauthenticated("an agent token is accepted only by /api/v1/agent/connect")
        scopes = parse_scopes(row.scopes.split(","))
        return Principal(row.user, scopes, row.id, row.expires_at)

    async def authenticate_agent(self, presented: str) -> AgentGrant:
        """The system an agent token lets its bearer serve; Unauthenticated for any other
        token."""
        row = await self._verified(presented)
        if row.system is None or row.scopes != Scope.AGENT_SERVE.value:
            raise Unauthenticated("this route takes an agent token ('hpcgate agent-token')")
        return AgentGrant(row.id, row.system)

    async def agent_token_live(self, token_id: str) -> bool:
        """Whether an agent token is still good, read from the store now (no cache): a
        connection's periodic check, so that a revoke by any process cuts it."""
        row = await self._store.get(token_id)
        if row is None or row.revoked_at is not None:
            return False
        return row.expires_at is None or row.expires_at > utcnow()

    async def _verified(self, presented: str) -> TokenRow:
        match = _TOKEN.match(presented)
        token_id, secret = match.groups() if match else ("", presented)
        row = await self._row(token_id) if match else None
        # The same hash and comparison run whether or not the id exists.
        expected = row.secret_hash if row is not None else _NO_TOKEN_DIGEST
        matches = hmac.compare_digest(expected, self._digest(secret))
        if row is None or not matches:
            raise Unauthenticated("invalid token")
        if row.revoked_at is not None:
            raise Unauthenticated("token revoked")
        if row.expires_at is not None and row.expires_at <= utcnow():
            raise Unauthenticated("token expired")
        return row

    async def _row(self, token_id: str) -> TokenRow | None:
        self._forget_if_revoked_elsewhere()
        now = time.monotonic()
        cached = self._cache.get(token_id)
        if cached is not None and now - cached.read_at < self._ttl:
            return cached.row
        row = await self._loads.load(token_id, lambda: self._store.get(token_id))
        self._cache.pop(token_id, None)  # re-inserted last: the oldest entry goes first
        if len(self._cache) >= _MAX_CACHED:
            del self._cache[next(iter(self._cache))]
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
