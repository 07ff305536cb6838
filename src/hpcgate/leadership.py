"""Which of the gateways sharing one database runs the background work that must run once:
the service controller's starts and stops of replicas and the shared housekeeping chores.
Every gateway serves requests.

On PostgreSQL the leader is the gateway holding a session-level advisory lock
(:data:`LOCK_KEY`) on a connection of its own, outside the pool: the lock ends with that
connection, so a leader that dies (``kill -9``, a crash) frees it as soon as PostgreSQL
sees the connection close, and the others, trying every ``interval`` seconds, take over
within about that. The leader checks as often that the lock is still its connection's; a
check that fails or takes over :data:`CHECK_TIMEOUT` ends its lead at once, so a leader cut
off from the database stops acting (within ``interval`` + 5 s, ``interval`` at most 5 s)
before PostgreSQL drops its connection and frees the lock for another (TCP keepalives of
about 11 s on that connection, where the server would otherwise wait hours to notice a
peer gone silent). A controller round already under way when the lead ends finishes. Whoever
leads, :meth:`Leadership.leads` answers from memory (no I/O per call).

The connection's ``application_name`` carries the gateway's name, so any gateway can say
which one leads (``GET /api/v1/health``, to an admin). On SQLite there is one gateway: it
always leads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from typing import Any

import asyncpg
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

#: The advisory lock's key: "hpcg" "lead" as two 32-bit halves' ASCII, any fixed number.
LOCK_KEY = 0x6870_6367_6C65_6164
#: Seconds a round may take: a leader whose check takes longer stops leading.
CHECK_TIMEOUT = 5.0
#: ``application_name`` of the leader's connection: this, then the gateway's name.
PREFIX = "hpcgate-leader "
#: PostgreSQL's keepalives on the leader's connection (seconds): a silent peer is
#: dropped, and the lock freed, after about idle + interval * count.
KEEPALIVES = {
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}
# Whose lock: the one on LOCK_KEY (a bigint key is classid, objid and objsubid 1) in this
# database (advisory locks are per database).
_WHO_LEADS = (
    "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND ((l.classid::bigint << 32) | l.objid::bigint) = $1"
)
_STILL_MINE = (
    "SELECT count(*) FROM pg_locks l WHERE l.pid = pg_backend_pid()"
    " AND l.locktype = 'advisory' AND l.granted AND l.objsubid = 1"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    " AND ((l.classid::bigint << 32) | l.objid::bigint) = $1"
)


def default_name() -> str:
    """This gateway's name: its host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


class Leadership:
    """Whether this gateway leads; :meth:`start` campaigns (and keeps the lead), :meth:`stop`
    gives it up. ``database_url`` is the gateway's SQLAlchemy URL."""

    def __init__(self, database_url: str, interval: float, name: str | None = None) -> None:
        self.name = name or default_name()
        self.interval = interval
        self._single = database_url.startswith("sqlite")
        self._dsn = "" if self._single else _dsn(database_url)
        self._leading = self._single
        self.leader: str | None = self.name if self._single else None
        self._connection: Any = None  # asyncpg's Connection: this gateway's own, for the lock
        self._task: asyncio.Task[None] | None = None

    def leads(self) -> bool:
        return self._leading

    async def start(self) -> None:
        """Try for the lead once now (a lone gateway leads from its start), then keep at it."""
        if self._single:
            return
        await self._attempt()
        self._task = asyncio.create_task(self._campaign(), name="leadership")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self._step_down("the gateway stops")

    async def _campaign(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._attempt()

    async def _attempt(self) -> None:
        try:
            await asyncio.wait_for(self.round(), CHECK_TIMEOUT)
        except Exception as exc:
            await self._step_down(f"{type(exc).__name__}: {exc}")

    async def round(self) -> None:
        """Check that the lead is still this gateway's, or try to take it; then note who
        leads. Any error (the connection lost) steps down: see :meth:`_step_down`."""
        if self._connection is None:
            settings = {"application_name": (PREFIX + self.name)[:63], **KEEPALIVES}
            self._connection = await asyncpg.connect(
                self._dsn, server_settings=settings, timeout=CHECK_TIMEOUT
            )
        if self._leading:
            if await self._connection.fetchval(_STILL_MINE, LOCK_KEY) != 1:
                raise LookupError("the lock is no longer this connection's")
            return
        if await self._connection.fetchval("SELECT pg_try_advisory_lock($1)", LOCK_KEY):
            self._leading, self.leader = True, self.name
            log.warning("this gateway (%s) leads: it runs the controllers", self.name)
            return
        found = await self._connection.fetchval(_WHO_LEADS, LOCK_KEY)
        known = isinstance(found, str) and found.startswith(PREFIX)
        self.leader = found[len(PREFIX) :] if known else None

    async def _step_down(self, why: str) -> None:
        """Stop leading at once and drop the connection (the lock goes with it; a new one
        is made at the next round)."""
        was, self._leading = self._leading and not self._single, self._single
        connection, self._connection = self._connection, None
        if connection is not None:
            await _close(connection)
        if not self._single:
            self.leader = None
        if was:
            log.warning("this gateway (%s) no longer leads: %s", self.name, why)


async def _close(connection: Any) -> None:
    """Close a connection, or drop it if it is broken (its lock goes with it)."""
    try:
        await asyncio.wait_for(connection.close(), 2)
    except Exception:
        connection.terminate()


def _dsn(database_url: str) -> str:
    """asyncpg's DSN for the gateway's SQLAlchemy URL (``postgresql+asyncpg://...``)."""
    url = make_url(database_url).set(drivername="postgresql")
    return url.render_as_string(hide_password=False)
