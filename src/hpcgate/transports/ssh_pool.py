"""The SSH connections of one system: one per login account, shared by its commands.

A connection carries many commands at once, each on its own channel, up to ``sessions``
channels (no more than sshd's ``MaxSessions``, 10 by default); further commands wait for a
free channel. The SFTP client of a connection is opened on first use and keeps one of its
channels for the connection's life. At most ``max_connections`` connections are open:
a new account's connection first closes the longest-idle one, or waits (up to
``wait_seconds``) for one to become idle. A connection unused for ``idle_seconds`` is
closed. A connection found closed (sshd restarted, keepalives unanswered) is replaced on
its next use.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import asyncssh

from hpcgate.model.errors import TransportError

log = logging.getLogger("hpcgate.ssh")

Connector = Callable[[str], Awaitable[asyncssh.SSHClientConnection]]


@dataclass(frozen=True, slots=True)
class PoolStats:
    open: int  # connections open now
    opened: int  # connections opened since the pool was made
    leased: int  # commands and file operations holding a connection now


class _Entry:
    """One open connection and who uses it."""

    def __init__(self, login: str, conn: asyncssh.SSHClientConnection, sessions: int) -> None:
        self.login = login
        self.conn = conn
        self.channels = asyncio.Semaphore(sessions)
        self.users = 0
        self.used_at = time.monotonic()
        self.timer: asyncio.TimerHandle | None = None
        self.sftp: asyncssh.SFTPClient | None = None
        self.sftp_lock = asyncio.Lock()

    @property
    def alive(self) -> bool:
        return not self.conn.is_closed()


class Lease:
    """A pooled connection lent to one command or file operation."""

    def __init__(self, pool: ConnectionPool, entry: _Entry) -> None:
        self._pool = pool
        self._entry = entry

    @property
    def conn(self) -> asyncssh.SSHClientConnection:
        return self._entry.conn

    def broken(self) -> None:
        """Close the connection and let the next lease open a fresh one."""
        self._pool.drop(self._entry)

    async def sftp(self) -> asyncssh.SFTPClient:
        """The connection's SFTP client, started on first use (it keeps one channel)."""
        entry = self._entry
        async with entry.sftp_lock:
            if entry.sftp is None:
                await entry.channels.acquire()  # held while the connection lives
                # Names that are not UTF-8 come as surrogate escapes, as os.listdir gives them.
                entry.sftp = await entry.conn.start_sftp_client(path_errors="surrogateescape")
            return entry.sftp


class ConnectionPool:
    """Connections by login account. Making one does no I/O; ``connect`` opens them."""

    def __init__(
        self,
        connect: Connector,
        *,
        max_connections: int,
        sessions: int,
        idle_seconds: float,
        wait_seconds: float,
    ) -> None:
        self._connect = connect
        self._max = max_connections
        self._sessions = sessions
        self._idle_seconds = idle_seconds
        self._wait_seconds = wait_seconds
        self._entries: dict[str, _Entry] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._connecting = 0
        self._freed = asyncio.Event()
        self._opened = 0

    def stats(self) -> PoolStats:
        live = [entry for entry in self._entries.values() if entry.alive]
        return PoolStats(len(live), self._opened, sum(entry.users for entry in live))

    @contextlib.asynccontextmanager
    async def lease(
        self, login: str, channel: bool = True, wait: float | None = None
    ) -> AsyncIterator[Lease]:
        """A connection for ``login``; with ``channel``, one of its channels is kept for the
        caller until the block ends (SFTP operations use the connection's own channel),
        waited for at most ``wait`` seconds (default ``wait_seconds``): then TransportError,
        the command never started."""
        entry = await self._entry(login)
        entry.users += 1  # no await since _entry returned: expiry and eviction skip it now
        if entry.timer is not None:
            entry.timer.cancel()
        try:
            if channel:
                await self._channel(entry, self._wait_seconds if wait is None else wait)
                try:
                    yield Lease(self, entry)
                finally:
                    entry.channels.release()
            else:
                yield Lease(self, entry)
        finally:
            entry.users -= 1
            if entry.users == 0:
                self._idle(entry)

    async def _channel(self, entry: _Entry, wait: float) -> None:
        try:
            async with asyncio.timeout(wait):
                await entry.channels.acquire()
        except TimeoutError:
            raise TransportError(
                f"all {self._sessions} channels of the connection as {entry.login} stayed busy"
                f" for {wait:g} s; the command was not sent, try again later"
            ) from None

    async def _entry(self, login: str) -> _Entry:
        entry = self._entries.get(login)
        if entry is not None and entry.alive:
            return entry
        async with self._locks.setdefault(login, asyncio.Lock()):
            entry = self._entries.get(login)
            if entry is not None and entry.alive:
                return entry
            if entry is not None:
                self.drop(entry)
            return await self._open(login)

    async def _open(self, login: str) -> _Entry:
        await self._make_room()
        self._connecting += 1
        try:
            conn = await self._connect(login)
        finally:
            self._connecting -= 1
            self._signal_freed()
        entry = _Entry(login, conn, self._sessions)
        self._entries[login] = entry
        self._opened += 1
        log.info("ssh: connection %d opened as %s", self._opened, login)
        return entry

    async def _make_room(self) -> None:
        """Wait until one more connection may open, closing the longest-idle one if full."""
        try:
            async with asyncio.timeout(self._wait_seconds):
                while len(self._entries) + self._connecting >= self._max:
                    idle = [entry for entry in self._entries.values() if entry.users == 0]
                    if idle:
                        self.drop(min(idle, key=lambda entry: entry.used_at))
                        continue
                    await self._freed.wait()
        except TimeoutError:
            raise TransportError(
                f"all {self._max} SSH connections of this system are busy; try again later"
            ) from None

    def _idle(self, entry: _Entry) -> None:
        entry.used_at = time.monotonic()
        if self._entries.get(entry.login) is entry:
            loop = asyncio.get_running_loop()
            entry.timer = loop.call_later(self._idle_seconds, self._expire, entry)
        self._signal_freed()

    def _expire(self, entry: _Entry) -> None:
        if entry.users == 0:
            log.info("ssh: closing the idle connection of %s", entry.login)
            self.drop(entry)

    def drop(self, entry: _Entry) -> None:
        """Forget and close a connection (its in-flight channels fail)."""
        if self._entries.get(entry.login) is entry:
            del self._entries[entry.login]
        if entry.timer is not None:
            entry.timer.cancel()
        entry.conn.close()  # also closes the jump host's connection (set_tunnel)
        self._signal_freed()

    def _signal_freed(self) -> None:
        self._freed.set()
        self._freed = asyncio.Event()

    async def close(self) -> None:
        """Close every connection and wait until they are closed."""
        entries = list(self._entries.values())
        for entry in entries:
            self.drop(entry)
        for entry in entries:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(entry.conn.wait_closed(), 5)
