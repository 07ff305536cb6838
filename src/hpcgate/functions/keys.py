"""An API key's limit on unended invocations, counted from the invocations in the store.

The count and the new invocation's row are taken under one lock per key, so two requests
at once cannot both take the last slot. The lock is this process's: two gateways on one
database may each let one request past the count at the same moment.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncIterator

from hpcgate.model.principal import Principal
from hpcgate.ratelimits import CONCURRENT, Quota
from hpcgate.store.functions import InvocationStore

#: When a client refused for too many unended invocations is told to retry, in seconds.
RETRY_SECONDS = 5


class KeySlots:
    def __init__(self, store: InvocationStore) -> None:
        self._store = store
        self._locks: dict[str, asyncio.Lock] = {}
        self._holders: Counter[str] = Counter()  # requests holding or awaiting each lock

    @contextlib.asynccontextmanager
    async def taken(self, who: Principal) -> AsyncIterator[None]:
        """Within the key's limit, hold its slot while the body writes the invocation;
        over it, :class:`~hpcgate.model.errors.RateLimited` and the body never runs."""
        limit = None if who.restriction is None else who.restriction.concurrent
        if limit is None:
            yield
            return
        key = who.token_id
        lock = self._locks.setdefault(key, asyncio.Lock())
        self._holders[key] += 1
        try:
            async with lock:
                await self._check(key, limit)
                yield
        finally:
            self._holders[key] -= 1
            if not self._holders[key]:  # the last one forgets the lock
                del self._holders[key], self._locks[key]

    async def _check(self, key: str, limit: int) -> None:
        live = await self._store.live_of_key(key)
        if live >= limit:
            quota = Quota(CONCURRENT, limit, 0)
            detail = f"this API key may have {limit} unended invocations at once: it has {live}"
            raise quota.refused(detail, RETRY_SECONDS)
