"""Consent: actions an admin marked (``[consent]``) wait for their user's approval.

Two things are held. A token made through the API holding a marked scope is stored, its
secret handed to the caller once, and refused until its user approves; a provider's token
issued to a marked OAuth client is refused from its first request until its user (the one
the provider's mapping names) approves. Each held credential has one consent request; every
request made with it while the request is pending is answered 202 with that request, and
nothing is done. Undecided past ``pending_seconds``, a request lapses: the credential stays
refused. A denied token is revoked.

Only the user decides, and never with the credential that asked, the credential held, a
token issued from the asking one (its asker could mint it), another token of the OAuth
client that asked (it could fetch one), an API key, or a credential of a marked client (its
holder is the party being checked). A decision is final; the same one
again is answered as the first (idempotent).

Decided requests are deleted ``keep_days`` after their decision, lapsed ones as long after
they lapsed (:meth:`Consents.prune`, a chore of the gateway's housekeeping), in batches.
A deleted request no longer holds its credential, so a held token that was not approved is
revoked first (a denied one already is); a marked client's token would ask again.

Which credentials are held is cached by token id for ``cache_seconds`` (one dictionary
lookup per request); a decision here evicts at once, another replica's shows within the
interval. A gateway that never held anything and has no ``[consent]`` looks nothing up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from hpcgate.clock import utcnow
from hpcgate.config import ConsentConfig
from hpcgate.model.consents import (
    Asker,
    ConsentAnswer,
    ConsentKind,
    ConsentPending,
    ConsentRequest,
    ConsentState,
)
from hpcgate.model.errors import Conflict, Forbidden, Gone, LimitExceeded, NotFound
from hpcgate.model.principal import Principal, Scope
from hpcgate.model.tokens import CreatedToken
from hpcgate.store.consents import ConsentStore
from hpcgate.store.tables import ConsentRow

#: A token id's parent (None: none, or no such token): how a descent is traced.
Parent = Callable[[str], Awaitable[str | None]]
#: Revokes a token (and its descendants) by id.
Revoke = Callable[[str], Awaitable[None]]

log = logging.getLogger(__name__)

_MAX_CACHED = 10_000
#: Requests read and deleted at once, and batches in one round of :meth:`Consents.prune`.
PRUNE_BATCH, PRUNE_BATCHES = 500, 20
_MAX_DEPTH = 64  # tokens issued from tokens: deeper chains are refused as approvers
LIST_MAX = 200


@dataclass(frozen=True, slots=True)
class _Cached:
    row: ConsentRow | None
    read_at: float


def state(row: ConsentRow, now: datetime) -> ConsentState:
    """A request's state now: a pending one past its expiry has lapsed."""
    if row.state == ConsentState.PENDING and row.expires_at <= now:
        return ConsentState.LAPSED
    return ConsentState(row.state)


def _what(row: ConsentRow) -> str:
    if row.kind == ConsentKind.TOKEN:
        return f"a new token ({row.credential}) with the scopes {row.scopes.replace(',', ', ')}"
    return f"acting through the OAuth client {row.client!r} with the scopes {row.scopes or '-'}"


def render(row: ConsentRow, now: datetime) -> ConsentRequest:
    """A stored request as clients see it."""
    return ConsentRequest(
        id=row.id,
        user=row.user,
        kind=ConsentKind(row.kind),
        what=_what(row),
        credential=row.credential,
        scopes=sorted(Scope(s) for s in row.scopes.split(",") if s),
        client=row.client,
        asked_by=Asker(user=row.asker_user, token_id=row.asker_token, client=row.asker_client),
        created_at=row.created_at,
        expires_at=row.expires_at,
        state=state(row, now),
        decided_at=row.decided_at,
    )


class Consents:
    """Holds, lists and decides consent requests. Construction does no I/O; ``parent``
    and ``revoke`` reach hpcgate's tokens."""

    def __init__(
        self,
        store: ConsentStore,
        config: ConsentConfig,
        parent: Parent,
        revoke: Revoke,
        cache_seconds: float = 5,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._config = config
        self._marked_scopes = frozenset(config.token_scopes)
        self._marked_clients = frozenset(config.clients)
        self._parent = parent
        self._revoke = revoke
        self._ttl = cache_seconds
        self._clock = clock
        self._cache: dict[str, _Cached] = {}
        self._active = bool(self._marked_scopes or self._marked_clients)

    async def start(self) -> None:
        """Look up once whether anything was ever held (else no request looks it up)."""
        self._active = self._active or await self._store.any()

    # -- holding ---------------------------------------------------------------------

    async def check_new_token(self, asker: Principal, created: CreatedToken) -> None:
        """ConsentPending if the token ``asker`` just made holds a marked scope: it is held
        until its user approves. Its secret is not out yet, so nobody could have used it;
        if holding it fails, it is revoked."""
        if self._marked_scopes.isdisjoint(created.scopes):
            return
        row = self._row(asker, ConsentKind.TOKEN, created.user, created.id, created.scopes)
        try:
            await self._open(row)
        except BaseException:
            await self._revoke(created.id)
            raise
        raise ConsentPending(ConsentAnswer(consent=render(row, self._clock()), token=created))

    async def admit(self, who: Principal) -> None:
        """Nothing if ``who``'s credential may act; ConsentPending while it waits for its
        user's consent, Forbidden once refused or lapsed."""
        if not self._active:
            return
        row = await self._held(who.token_id)
        if row is None:
            if who.client is None or who.client not in self._marked_clients:
                return
            row = await self._hold_client(who)
        now = self._clock()
        found = state(row, now)
        if found is ConsentState.APPROVED:
            return
        if found is ConsentState.PENDING:
            raise ConsentPending(ConsentAnswer(consent=render(row, now)))
        raise Forbidden(f"consent request {row.id} was {found}: this credential is refused")

    async def _hold_client(self, who: Principal) -> ConsentRow:
        if ":" in who.user:
            raise Forbidden(
                f"requests through the client {who.client!r} need a user's consent, and a"
                " client's own token (a service account) has no user to give it"
            )
        row = self._row(who, ConsentKind.CLIENT, who.user, who.token_id, who.scopes)
        row.client = who.client
        return await self._open(row)

    def _row(
        self, asker: Principal, kind: ConsentKind, user: str, held: str, scopes: Iterable[Scope]
    ) -> ConsentRow:
        now = self._clock()
        return ConsentRow(
            id=secrets.token_hex(8),
            user=user,
            kind=kind.value,
            credential=held,
            scopes=",".join(sorted(scopes)),
            asker_user=asker.user,
            asker_token=asker.token_id,
            asker_client=asker.client,
            created_at=now,
            expires_at=now + timedelta(seconds=self._config.pending_seconds),
            state=ConsentState.PENDING.value,
        )

    async def _open(self, row: ConsentRow) -> ConsentRow:
        waiting = await self._store.pending(row.user, row.created_at)
        if waiting >= self._config.pending_per_user:
            raise LimitExceeded(
                f"{row.user} has {waiting} consent requests waiting, the most allowed:"
                " decide some first",
                limit=self._config.pending_per_user,
                requested=waiting + 1,
            )
        self._active = True
        stored = await self._store.open(row)
        self._cache.pop(row.credential, None)
        return stored

    async def _held(self, credential: str) -> ConsentRow | None:
        now = time.monotonic()
        cached = self._cache.get(credential)
        if cached is not None and now - cached.read_at < self._ttl:
            return cached.row
        row = await self._store.held(credential)
        self._cache.pop(credential, None)
        if len(self._cache) >= _MAX_CACHED:
            del self._cache[next(iter(self._cache))]
        self._cache[credential] = _Cached(row, now)
        return row

    # -- forgetting ----------------------------------------------------------------------

    async def prune(self, batch: int = PRUNE_BATCH, batches: int = PRUNE_BATCHES) -> int:
        """One round: delete up to ``batch * batches`` requests decided or lapsed more than
        ``keep_days`` ago (a backlog goes in later rounds); how many. A request whose token
        cannot be revoked is logged and kept, and the round goes on past it."""
        cutoff = self._clock() - timedelta(days=self._config.keep_days)
        after, forgotten = "", 0
        for _ in range(batches):
            rows = await self._store.prunable(cutoff, after, batch)
            if not rows:
                break
            after = rows[-1].id
            gone = [row.id for row in rows if await self._released(row)]
            if gone:
                forgotten += await self._store.forget(gone, cutoff)
            await asyncio.sleep(0)  # requests are served between two batches
        return forgotten

    async def _released(self, row: ConsentRow) -> bool:
        """Whether ``row`` may go: nothing it holds would act without it (a token not
        approved is revoked first)."""
        if row.kind != ConsentKind.TOKEN or row.state == ConsentState.APPROVED:
            return True
        try:
            with contextlib.suppress(NotFound):  # revoked already
                await self._revoke(row.credential)
        except Exception:
            log.exception("consent request %s kept: its token could not be revoked", row.id)
            return False
        return True

    # -- reading and deciding ----------------------------------------------------------

    async def list(
        self, who: Principal, only: ConsentState | None, limit: int
    ) -> list[ConsentRequest]:
        """``who``'s own requests, newest first (only those in state ``only``)."""
        stored = ConsentState.PENDING if only is ConsentState.LAPSED else only
        now = self._clock()
        rows = await self._store.find(who.user, stored, limit)
        shown = [render(row, now) for row in rows]
        return [c for c in shown if only is None or c.state is only]

    async def get(self, who: Principal, consent_id: str) -> ConsentRequest:
        return render(await self._own(who, consent_id), self._clock())

    async def decide(self, who: Principal, consent_id: str, approve: bool) -> ConsentRequest:
        """Approve or deny ``who``'s own request with a credential that may; the same
        decision again is the first's answer, the other one a Conflict."""
        row = await self._own(who, consent_id)
        await self._check_decider(who, row)
        wanted = ConsentState.APPROVED if approve else ConsentState.DENIED
        now = self._clock()
        if state(row, now) is ConsentState.PENDING:
            if await self._store.decide(row.id, wanted.value, who.token_id, now):
                await self._decided(row, wanted)
            row = await self._own(who, consent_id)  # as decided, here or at the same time
        found = state(row, now)
        if found is wanted:
            return render(row, now)
        if found is ConsentState.LAPSED:
            raise Gone(f"consent request {row.id} lapsed undecided at {row.expires_at}")
        raise Conflict(f"consent request {row.id} was already {found}")

    async def _decided(self, row: ConsentRow, decision: ConsentState) -> None:
        self._cache.pop(row.credential, None)
        if decision is ConsentState.DENIED and row.kind == ConsentKind.TOKEN:
            with contextlib.suppress(NotFound):  # revoked already
                await self._revoke(row.credential)

    async def _own(self, who: Principal, consent_id: str) -> ConsentRow:
        row = await self._store.get(consent_id)
        if row is None or row.user != who.user:
            raise NotFound(f"no consent request {consent_id!r}")
        return row

    async def _check_decider(self, who: Principal, row: ConsentRow) -> None:
        who.unrestricted()  # an API key decides nothing
        if who.token_id in (row.credential, row.asker_token):
            raise Forbidden("a credential cannot decide the consent request it asked for")
        if who.client is not None and who.client in (row.asker_client, *self._marked_clients):
            raise Forbidden(
                f"a credential of the client {who.client!r} (the one that asked, or one held for"
                " consent) decides no consent request: use your own"
            )
        if await self._descends(who.token_id, row.asker_token):
            raise Forbidden(
                "this token was issued from the one that asked: decide with another of yours"
            )

    async def _descends(self, token_id: str, ancestor: str) -> bool:
        """Whether ``token_id`` was issued, at any depth, from ``ancestor`` (a chain too
        deep to trace counts as yes: refused, not trusted)."""
        current: str | None = token_id
        for _ in range(_MAX_DEPTH):
            current = await self._parent(current) if current is not None else None
            if current is None:
                return False
            if current == ancestor:
                return True
        return True
