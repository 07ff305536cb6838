"""The limits an invocation is started under: its API key's unended invocations, and the
function's own limits on each caller (its registration's ``limits``: invocations a minute,
counted in this gateway's memory, and unended invocations, counted in the store). The
stricter wins; the function's owner, with its own token, has none of the function's.

A count of unended invocations and the new invocation's row are taken under one lock per
key (and per function and caller), so two requests at once cannot both take the last
slot. The locks are this process's: two gateways on one database may each let one request
past the count at the same moment.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable

from hpcgate.functions.registry import Found
from hpcgate.model.principal import Principal
from hpcgate.ratelimits import (
    CONCURRENT,
    FUNCTION_CONCURRENT,
    RETRY_SECONDS,
    Quota,
    RateLimits,
)
from hpcgate.store.functions import InvocationStore

Count = Callable[[], Awaitable[int]]


class KeySlots:
    def __init__(self, store: InvocationStore, limits: RateLimits | None = None) -> None:
        self._store = store
        self._limits = limits or RateLimits()
        self._locks: dict[str, asyncio.Lock] = {}
        self._holders: Counter[str] = Counter()  # requests holding or awaiting each lock

    @contextlib.asynccontextmanager
    async def taken(self, who: Principal, found: Found | None = None) -> AsyncIterator[list[Quota]]:
        """Within the key's and the function's limits, hold their slots while the body
        writes the invocation (it gets the quotas that applied); over one,
        :class:`~hpcgate.model.errors.RateLimited` and the body never runs."""
        quotas: list[Quota] = []
        async with contextlib.AsyncExitStack() as held:
            await held.enter_async_context(self._key_slot(who, quotas))
            if found is not None and not found.owned_by(who):
                await held.enter_async_context(self._function_slot(who, found, quotas))
            yield quotas

    @contextlib.asynccontextmanager
    async def _key_slot(self, who: Principal, quotas: list[Quota]) -> AsyncIterator[None]:
        limit = None if who.restriction is None else who.restriction.concurrent
        if limit is None:
            yield
            return
        key = who.token_id

        def refusal(live: int) -> str:
            return f"this API key may have {limit} unended invocations at once: it has {live}"

        count = functools.partial(self._store.live_of_key, key)
        async with self._slot(f"key/{key}", limit, count, CONCURRENT, refusal, quotas):
            yield

    @contextlib.asynccontextmanager
    async def _function_slot(
        self, who: Principal, found: Found, quotas: list[Quota]
    ) -> AsyncIterator[None]:
        limits, pk = found.spec.limits, found.row.pk
        if limits.per_minute is not None:
            quotas.append(self._limits.admit_call(_caller(who), str(pk), limits.per_minute))
        if limits.concurrent is None:
            yield
            return
        limit = limits.concurrent

        def refusal(live: int) -> str:
            return f"this function takes {limit} unended invocations of each caller: {live} now"

        count = functools.partial(self._store.live_of_caller, pk, who.user, who.key_id)
        lock = f"function/{pk}/{_caller(who)}"
        async with self._slot(lock, limit, count, FUNCTION_CONCURRENT, refusal, quotas):
            yield

    @contextlib.asynccontextmanager
    async def _slot(
        self,
        name: str,
        limit: int,
        count: Count,
        policy: str,
        refusal: Callable[[int], str],
        quotas: list[Quota],
    ) -> AsyncIterator[None]:
        lock = self._locks.setdefault(name, asyncio.Lock())
        self._holders[name] += 1
        try:
            async with lock:
                live = await count()
                quota = Quota(policy, limit, max(0, limit - live - 1))
                if live >= limit:
                    raise Quota(policy, limit, 0).refused(refusal(live), RETRY_SECONDS)
                quotas.append(quota)
                yield
        finally:
            self._holders[name] -= 1
            if not self._holders[name]:  # the last one forgets the lock
                del self._holders[name], self._locks[name]


def _caller(who: Principal) -> str:
    """Who a function's limits count: an API key apart from its user's own token."""
    return f"key/{who.key_id}" if who.key_id is not None else f"user/{who.user}"
