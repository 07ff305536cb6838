"""Concurrent loads of one key share a single call (the "single flight" of a cache miss).

When a cached entry expires under load, every request that needs it misses at once; without
this each would read the database itself, and hundreds of identical reads would queue behind
one another for seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class Coalesced(Generic[K, V]):
    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    async def load(self, key: K, loader: Callable[[], Awaitable[V]]) -> V:
        """``loader()``'s result, shared with every caller that asks for ``key`` while it
        runs. A caller that is cancelled leaves the load running for the others."""
        running = self._running.get(key)
        if running is None:
            running = asyncio.ensure_future(loader())
            self._running[key] = running
            running.add_done_callback(lambda done: self._finished(key, done))
        return await asyncio.shield(running)

    def _finished(self, key: K, done: asyncio.Future[V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if not done.cancelled():
            done.exception()  # retrieved here, so a load whose callers all left logs nothing
