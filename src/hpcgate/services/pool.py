"""The connections to each replica: one kept-alive HTTP/1.1 connection per request in flight,
a few kept idle between requests for the next ones.

A pool of hpcgate's own, not httpcore's, because it is the proxy's hot path: a request takes
the newest idle connection (or opens one) and gives it back at the end of its answer, with
no lock, no per-phase bookkeeping and no walk over the other connections.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

from hpcgate.accounts import Account
from hpcgate.services.connection import Connection, NotSent, connect
from hpcgate.transports.base import Streams

CONNECTIONS_PER_REPLICA = 1024  # open at once; a request beyond them waits for one
IDLE_KEPT_PER_REPLICA = 64  # connections kept idle for the next requests; the rest close
IDLE_SECONDS = 30.0  # an idle connection older than this is closed, not reused
CONNECT_SECONDS = 10.0


class ReplicaPool:
    """The connections to one replica, opened through the transport as one account."""

    def __init__(self, streams: Streams, account: Account | None) -> None:
        self._streams = streams
        self._account = account
        self._idle: deque[Connection] = deque()
        self._lent: set[Connection] = set()
        self._slots = asyncio.Semaphore(CONNECTIONS_PER_REPLICA)
        self._closed = False

    @property
    def idle(self) -> int:
        return len(self._idle)

    async def take(self, host: str, port: int) -> Connection:
        """An idle connection still good, else a new one (:class:`NotSent` if none can be
        opened in time); give it back with :meth:`give_back` or :meth:`discard`."""
        await self._slots.acquire()
        try:
            connection = await self._reused() or await self._connect(host, port)
        except BaseException:
            self._slots.release()
            raise
        self._lent.add(connection)
        return connection

    async def _reused(self) -> Connection | None:
        oldest = time.monotonic() - IDLE_SECONDS
        while self._idle:
            connection = self._idle.pop()
            if connection.idle_since > oldest and not connection.stale():
                return connection
            await connection.aclose()
        return None

    async def _connect(self, host: str, port: int) -> Connection:
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                return await connect(self._streams, self._account, host, port)
        except TimeoutError as exc:
            raise NotSent(f"{host}:{port}: no connection in time") from exc

    async def give_back(self, connection: Connection) -> None:
        """The connection after its exchange: kept for the next if it ended cleanly and
        few are idle, else closed."""
        kept = not self._closed and len(self._idle) < IDLE_KEPT_PER_REPLICA
        if self._release(connection) and kept and connection.reusable():
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
            return
        await connection.aclose()

    async def discard(self, connection: Connection) -> None:
        """Close a connection that must not carry another exchange."""
        self._release(connection)
        await connection.aclose()

    def _release(self, connection: Connection) -> bool:
        if connection not in self._lent:
            return False  # given back already, or the pool was closed under it
        self._lent.discard(connection)
        self._slots.release()
        return True

    async def aclose(self) -> None:
        """Close every connection, idle or in use (a request still on one breaks off)."""
        self._closed = True
        connections = [*self._idle, *self._lent]
        self._idle.clear()
        for connection in connections:
            await connection.aclose()


class Pools:
    """One connection pool per replica, made on first use, closed when it ends."""

    def __init__(self) -> None:
        self._pools: dict[int, ReplicaPool] = {}

    def get(self, replica: int, streams: Streams, account: Account | None) -> ReplicaPool:
        pool = self._pools.get(replica)
        if pool is None:
            pool = self._pools[replica] = ReplicaPool(streams, account)
        return pool

    async def close(self, replica: int) -> None:
        pool = self._pools.pop(replica, None)
        if pool is not None:
            await pool.aclose()

    async def close_all(self) -> None:
        for replica in list(self._pools):
            await self.close(replica)
