"""API tokens: random secrets shown once, stored as SHA-256 hashes, scoped, expiring.

A token reads ``hpcg_<id>_<secret>``. The id finds the row; the secret is compared by hash
in constant time. The secret has 256 bits of entropy, so a fast hash is enough.

A token issued through the API by another token (its parent) holds at most its parent's
scopes and expires no later than its parent; revoking a token revokes every token issued
from it, at any depth, so a leaked token cannot leave descendants behind.

A token issued with ``functions`` is an **API key**: restricted to invoking those functions of
its user's (each must exist and be the user's own) and to the invocations it started, within
its limits (requests per minute, unended invocations). Only a full token issues one (a key
issues nothing), and like any token it holds at most its issuer's scopes and lifetime.
:meth:`TokenService.authenticate` refuses a key unless the route says it takes keys: a route
that says nothing is closed to keys.

Any token issued through the API may also be **limited** (a :class:`Restriction` too): to
one ``system``, one ``project``, or to reading (``read_only``). A limited token, a key
included, issues no token at all, so no token is ever broader than the one that made it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from hpcgate.clock import utcnow
from hpcgate.coalesce import Coalesced
from hpcgate.model.errors import BadRequest, Forbidden, Invalid, NotFound, Unauthenticated
from hpcgate.model.principal import (
    DEFAULT_SCOPES,
    READ_SCOPES,
    Principal,
    Restriction,
    Scope,
)
from hpcgate.model.tokens import USER_NAME_PATTERN, CreatedToken, KeyLimits, NewToken, TokenInfo
from hpcgate.store.tables import TokenRow
from hpcgate.store.tokens import TokenStore

_TOKEN = re.compile(r"^hpcg_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
USER_NAME = re.compile(USER_NAME_PATTERN)
# Entries in the verified-token cache, unknown ids included: bounded against id spraying.
_MAX_CACHED = 10_000
#: What a key may hold: reading and invoking its functions, nothing more.
KEY_SCOPES = frozenset({Scope.JOBS_READ, Scope.JOBS_WRITE})

#: Whether a user owns a function of that name: (user, name) -> bool.
#: Whether a key made by this caller for this user may name this function.
Owns = Callable[[Principal, str, str], Awaitable[bool]]

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
    """What an agent token lets its bearer do: serve ``system`` (as ``user``'s agent only,
    if the token names one)."""

    token_id: str
    system: str
    user: str | None = None


AGENT_USER = "hpcgate-agent"  # the user name agent tokens are listed under


@dataclass(frozen=True, slots=True)
class _Verified:
    """A token row (None: no such id) as last read from the store, kept for a few seconds."""

    row: TokenRow | None
    read_at: float


def restriction(row: TokenRow) -> Restriction | None:
    """A token's limits as stored (None: a full token); ValueError if unreadable."""
    functions = None if row.functions is None else _function_names(row)
    scoped = (row.limit_system, row.limit_project, row.limit_service)
    if functions is None and all(v is None for v in scoped) and not row.read_only:
        return None
    return Restriction(
        functions,
        row.per_minute,
        row.concurrent,
        system=row.limit_system,
        project=row.limit_project,
        read_only=bool(row.read_only),
        service=row.limit_service,
    )


def _function_names(row: TokenRow) -> frozenset[str]:
    names = json.loads(row.functions or "null")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"token {row.id}: its functions are not a list of names")
    return frozenset(names)


def render(row: TokenRow) -> TokenInfo:
    """A stored token as clients see it; ValueError if the row cannot be shown."""
    limit = restriction(row)
    key = limit if limit is not None and limit.functions is not None else None
    limits = (
        None if key is None else KeyLimits(per_minute=key.per_minute, concurrent=key.concurrent)
    )
    return TokenInfo(
        id=row.id,
        user=row.user,
        scopes=sorted(Scope(s) for s in row.scopes.split(",")),
        description=row.description,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        functions=None if key is None or key.functions is None else sorted(key.functions),
        limits=limits,
        system=row.limit_system,
        project=row.limit_project,
        service=row.limit_service,
        read_only=bool(row.read_only),
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


def _check_carried(parent: Principal) -> None:
    """A provider's token whose Unix account a mapping rule named, or a client's own (a
    service account), issues no hpcgate token: the token could not carry that account, and
    a service account's name is no hpcgate user's."""
    if parent.account is not None or ":" in parent.user:
        raise Forbidden(
            "this identity (a service account, or a mapping rule's Unix account) cannot be"
            " carried by an hpcgate token: use the provider's tokens"
        )


def _check_unlimited(parent: Principal) -> None:
    """A limited token (a key, or one limited to a system, a project or reading) issues
    nothing: whatever it issued could reach past its own limits."""
    parent.unrestricted()  # a key says so in its own words
    if parent.limited:
        raise Forbidden("a limited token issues no tokens: use a token without limits")


def _check_issuer(parent: Principal, user: str, scopes: frozenset[Scope]) -> None:
    if parent.has(Scope.ADMIN):
        return
    if user != parent.user or not scopes <= parent.scopes:
        raise Forbidden("only an admin may issue tokens for others or with more scopes")


def _key_scopes(parent: Principal, request: NewToken) -> frozenset[Scope]:
    """A key's scopes: as asked (within :data:`KEY_SCOPES`), by default those of them the
    issuer holds."""
    if "scopes" not in request.model_fields_set:
        return frozenset(scope for scope in KEY_SCOPES if parent.has(scope))
    scopes = frozenset(request.scopes)
    if not scopes <= KEY_SCOPES:
        raise Invalid("an API key holds at most the scopes jobs:read and jobs:write")
    return scopes


def _new_row(
    user: str,
    scopes: frozenset[Scope],
    expires: datetime | None,
    description: str,
    parent_id: str | None,
) -> TokenRow:
    return TokenRow(
        user=user,
        description=description,
        scopes=",".join(sorted(scopes)),
        created_at=utcnow(),
        expires_at=expires,
        parent_id=parent_id,
    )


def _readable(row: TokenRow) -> Restriction | None:
    """A key's restriction; a key whose restriction cannot be read is no key at all."""
    try:
        return restriction(row)
    except ValueError as exc:
        log.error("%s", exc)
        raise Unauthenticated("invalid token") from None


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
        owns: Owns | None = None,
        systems: frozenset[str] | None = None,
    ) -> None:
        self._store = store
        self._owns = owns
        self._systems = systems
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
        issued, _ = await self._add(_new_row(user, scopes, expires, description, None))
        return issued

    async def issue(self, parent: Principal, request: NewToken) -> CreatedToken:
        """A token made by ``parent`` through the API, bound by what the parent holds; with
        ``functions``, an API key for those functions of its user's."""
        _check_unlimited(parent)
        _check_carried(parent)
        user, scopes = request.user or parent.user, frozenset(request.scopes)
        if request.functions is not None:
            scopes = _key_scopes(parent, request)
        elif request.limits is not None:
            raise Invalid("limits are an API key's: give the functions it may invoke")
        elif "scopes" not in request.model_fields_set:  # the defaults the parent holds
            scopes = frozenset(scope for scope in scopes if parent.has(scope))
        _check_issuer(parent, user, scopes)
        lifetime = timedelta(seconds=request.expires_in) if request.expires_in else None
        expires = _child_expiry(parent, lifetime)
        row = _new_row(user, scopes, expires, request.description, parent.token_id)
        self._limit(row, request)
        if request.functions is not None:
            await self._restrict(parent, row, request.functions, request.limits or KeyLimits())
        issued, info = await self._add(row)
        return CreatedToken(**info.model_dump(), token=issued.secret)

    def _limit(self, row: TokenRow, request: NewToken) -> None:
        """Give ``row`` the request's system, project, service and read-only limits."""
        placed = request.system is not None or request.project is not None
        if (placed or request.service is not None or request.read_only) and request.functions:
            raise Invalid("an API key is limited by its functions: no other limits")
        if placed and request.service is not None:
            raise Invalid("a token limited to a service takes no system or project limit")
        if request.system is not None and request.system not in (self._systems or ()):
            raise Invalid(f"no system named {request.system!r} to limit the token to")
        reads = {s for s in row.scopes.split(",") if Scope(s) in READ_SCOPES | {Scope.ADMIN}}
        if request.read_only and not reads:
            raise Invalid("a read-only token needs a read scope (jobs:read or files:read)")
        row.limit_system, row.limit_project = request.system, request.project
        row.limit_service = request.service
        row.read_only = request.read_only

    async def _restrict(
        self, parent: Principal, row: TokenRow, functions: list[str], limits: KeyLimits
    ) -> None:
        """Make ``row`` a key for ``functions``, each of which its user must own (or own
        the project of)."""
        names = sorted(set(functions))
        for name in names:
            if self._owns is None or not await self._owns(parent, row.user, name):
                raise NotFound(
                    f"no function {name!r} of {row.user!r}: a key is for its own"
                    " (or, made by its user, for a function of a project it owns)"
                )
        row.functions = json.dumps(names)
        row.per_minute, row.concurrent = limits.per_minute, limits.concurrent

    async def _add(self, row: TokenRow) -> tuple[IssuedToken, TokenInfo]:
        """Give ``row`` its id and secret and store it."""
        if not USER_NAME.fullmatch(row.user):  # fullmatch: '$' alone would take 'alice\n'
            raise BadRequest(f"invalid user name {row.user!r}")
        if not row.scopes:
            raise BadRequest("a token needs at least one scope")
        if Scope.AGENT_SERVE.value in row.scopes.split(",") and row.system is None:
            raise BadRequest("agent:serve is an agent token's scope: 'hpcgate agent-token create'")
        token_id, secret = secrets.token_hex(6), secrets.token_urlsafe(32)
        row.id, row.secret_hash = token_id, self._digest(secret)
        info = render(row)  # before storing: never store a row that reading cannot show
        await self._store.add(row)
        self._cache.pop(token_id, None)
        scopes = parse_scopes(row.scopes.split(","))
        token = f"hpcg_{token_id}_{secret}"
        return IssuedToken(token_id, row.user, scopes, row.expires_at, token), info

    async def create_agent(
        self, system: str, description: str = "", user: str | None = None
    ) -> IssuedToken:
        """A token that lets one agent serve ``system`` (and does nothing else); with
        ``user``, only an agent that says it is that user's (a user-mode agent)."""
        scopes = frozenset({Scope.AGENT_SERVE})
        row = _new_row(AGENT_USER, scopes, None, description, None)
        row.system = system
        row.agent_user = user
        issued, _ = await self._add(row)
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

    async def authenticate(self, presented: str, keys: bool = False) -> Principal:
        """The principal behind a bearer token; Unauthenticated for anything else (an agent
        token included: it is good only for :meth:`authenticate_agent`), and Forbidden for
        an API key unless the route takes ``keys``."""
        row = await self._verified(presented)
        if row.system is not None:
            raise Unauthenticated("an agent token is accepted only by /api/v1/agent/connect")
        scopes = parse_scopes(row.scopes.split(","))
        who = Principal(row.user, scopes, row.id, row.expires_at, _readable(row))
        if not keys:
            who.unrestricted()
        return who

    async def authenticate_agent(self, presented: str) -> AgentGrant:
        """The system an agent token lets its bearer serve; Unauthenticated for any other
        token."""
        row = await self._verified(presented)
        if row.system is None or row.scopes != Scope.AGENT_SERVE.value:
            raise Unauthenticated("this route takes an agent token ('hpcgate agent-token')")
        return AgentGrant(row.id, row.system, row.agent_user)

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
