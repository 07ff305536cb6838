"""The connections to each replica: one kept-alive HTTP/1.1 connection per request in flight,
a few kept idle between requests for the next ones, and a spare opened ahead.

A pool of hpcgate's own, not httpcore's, because it is the proxy's hot path: a request takes
the newest idle connection (or opens one) and gives it back at the end of its answer, with
no lock, no per-phase bookkeeping and no walk over the other connections.

A replica that closes its connections after answering (llama.cpp's server does, a moment
after each streamed answer) would make most requests connect first, on their way to the
first byte. So the pool of a routed replica opens a connection ahead, in the background (a
*spare*, :data:`SPARES_PER_REPLICA` at most, idle or being opened), when an answer ends
with its connection closed and none left idle, or after any answer once the replica was
seen closing a kept connection soon after it was kept (a keep-alive running out later is
not that; a kept connection that lasts clears it). A request finds the spare connected,
or, when it comes while the spare is being opened, waits for it rather than opening
another. A spare is fresh: it carried nothing, so one the replica closed while it waited
is seen (:meth:`Connection.stale`) and dropped before a byte goes on it (the request
connects anew), and it is used only within :data:`SPARE_SECONDS` (shorter than common
servers' keep-alive), so a replica is not caught closing it as a request goes out. A
withdrawn replica's pool (draining, ended) opens none, and closes those it has.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Coroutine

from hpcgate.accounts import Account
from hpcgate.services.connection import Connection, NotSent, connect
from hpcgate.transports.base import Streams

CONNECTIONS_PER_REPLICA = 1024  # open at once; a request beyond them waits for one
IDLE_KEPT_PER_REPLICA = 64  # connections kept idle for the next requests; the rest close
IDLE_SECONDS = 30.0  # an idle connection older than this is closed, not reused
CONNECT_SECONDS = 10.0
SPARES_PER_REPLICA = 1  # connections opened ahead at once, for a replica that closes its own
SPARE_SECONDS = 2.0  # a spare not used by then is closed, before the replica's keep-alive ends
SPARE_TASK = "hpcgate spare connection"  # the name of the task that opens one

log = logging.getLogger(__name__)


class ReplicaPool:
    """The connections to one replica, opened through the transport as one account."""

    def __init__(self, streams: Streams, account: Account | None) -> None:
        self._streams = streams
        self._account = account
        self._idle: deque[Connection] = deque()
        self._lent: set[Connection] = set()
        self._slots = asyncio.Semaphore(CONNECTIONS_PER_REPLICA)
        self._closed = False
        self._routed = False  # spares only for a replica that takes requests
        self._closes_kept = False  # the replica was seen closing a connection just kept
        self._address: tuple[str, int] | None = None
        self._opening: set[asyncio.Task[None]] = set()  # spares being opened
        self._awaited: set[asyncio.Task[None]] = set()  # of those, one a request waits for
        self._spares_idle = 0
        self._chores: set[asyncio.Task[None]] = set()  # held: the loop keeps weak references
        self.spares_opened = 0  # for tests and benchmarks

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def spares(self) -> int:
        """Spares idle or being opened."""
        return len(self._opening) + self._spares_idle

    async def take(self, host: str, port: int) -> Connection:
        """An idle connection still good, else a spare being opened, else a new one
        (:class:`NotSent` if none can be opened in time); give it back with
        :meth:`give_back` or :meth:`discard`."""
        await self._slots.acquire()
        try:
            self._address = (host, port)
            connection = await self._reused() or await self._spare() or await self._connect()
        except BaseException:
            self._slots.release()
            raise
        self._lent.add(connection)
        return connection

    async def _reused(self) -> Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            self._spares_idle -= connection.spare
            age = now - connection.idle_since
            fresh = age < (SPARE_SECONDS if connection.spare else IDLE_SECONDS)
            if fresh and not connection.stale():
                if not connection.spare:  # a kept one lasted: the replica keeps them
                    self._closes_kept = False
                connection.spare = False
                return connection
            if not connection.spare and age < SPARE_SECONDS:  # not a keep-alive running out
                self._closes_kept = True
            await connection.aclose()
        return None

    async def _spare(self) -> Connection | None:
        """A spare being opened, once it is (None if none is, or another request waits
        for it already: in a burst, one request waits for the spare and the others
        connect at once); a request that stops waiting leaves it to the next."""
        for opening in self._opening:
            if opening in self._awaited:
                continue
            self._awaited.add(opening)
            try:
                await asyncio.wait([opening])
            finally:
                self._awaited.discard(opening)
            return await self._reused()
        return None

    async def _connect(self) -> Connection:
        if self._address is None:
            raise NotSent("no address yet")
        host, port = self._address
        try:
            async with asyncio.timeout(CONNECT_SECONDS):
                return await connect(self._streams, self._account, host, port)
        except TimeoutError as exc:
            raise NotSent(f"{host}:{port}: no connection in time") from exc

    def routed(self, routed: bool) -> None:
        """Whether the replica takes requests (it is ready): a pool opens spares only
        then; withdrawn (draining, ending), it closes its idle connections and spares."""
        self._routed = routed
        if not routed:
            for opening in self._opening:
                opening.cancel()
            if self._idle:
                idle, self._idle, self._spares_idle = list(self._idle), deque(), 0
                self._chore(_close_each(idle), "hpcgate idle connections closed")

    def _open_spare(self) -> None:
        """Open a spare in the background, if the replica is routed and has none."""
        if not self._routed or self._closed or self._address is None:
            return
        if len(self._opening) + self._spares_idle < SPARES_PER_REPLICA:
            self._opening.add(task := self._chore(self._opened_spare(), SPARE_TASK))
            task.add_done_callback(self._opening.discard)

    def _chore(self, work: Coroutine[None, None, None], name: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._chores.add(task)
        task.add_done_callback(self._chores.discard)
        return task

    async def _opened_spare(self) -> None:
        try:
            connection = await self._connect()
        except NotSent as exc:  # the next request finds out for itself, and says so
            log.debug("no spare connection: %s", exc.reason)
            return
        if not self._routed or self._closed:
            await connection.aclose()
            return
        self.spares_opened += 1
        self._spares_idle += 1
        connection.spare, connection.idle_since = True, time.monotonic()
        self._idle.append(connection)
        await self._sweep()

    async def _sweep(self) -> None:
        """Close the idle connections the replica has closed meanwhile (kept ones a
        replica that closes its own left behind), so they do not pile up."""
        closed = [connection for connection in self._idle if connection.stale()]
        if closed:
            self._idle = deque(c for c in self._idle if c not in closed)
            self._spares_idle -= sum(c.spare for c in closed)
            await _close_each(closed)

    async def give_back(self, connection: Connection) -> None:
        """The connection after its exchange: kept for the next if it ended cleanly and
        few are idle, else closed. A spare is opened if the replica closes its
        connections (this one, or kept ones before)."""
        kept = not self._closed and len(self._idle) < IDLE_KEPT_PER_REPLICA
        released = self._release(connection)
        if released and kept and connection.reusable():
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
            if self._closes_kept:
                self._open_spare()
            return
        if released and not self._idle:
            self._open_spare()
        await connection.aclose()

    async def discard(self, connection: Connection) -> None:
        """Close a connection that must not carry another exchange (one kept from an
        earlier exchange that broke before a byte of its answer came: the replica closes
        its kept connections)."""
        if self._release(connection) and connection.unheard_after_reuse():
            self._closes_kept = True
        await connection.aclose()

    def _release(self, connection: Connection) -> bool:
        if connection not in self._lent:
            return False  # given back already, or the pool was closed under it
        self._lent.discard(connection)
        self._slots.release()
        return True

    async def aclose(self) -> None:
        """Close every connection, idle or in use (a request still on one breaks off),
        and stop the spares being opened."""
        self._closed = True
        for opening in self._opening:
            opening.cancel()
        connections = [*self._idle, *self._lent]
        self._idle.clear()
        self._spares_idle = 0
        await _close_each(connections)


async def _close_each(connections: list[Connection]) -> None:
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
