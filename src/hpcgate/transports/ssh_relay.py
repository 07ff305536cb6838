"""Byte streams to a host and port on the cluster through hpcgate-forced's relay, for a
functional account whose key may not forward (``restrict``, so ``no-port-forwarding``, as
at SAIA): a session channel running ``relay HOST PORT`` (:func:`hpcgate.forced.relay`).

hpcgate-forced checks the target (a node where the account runs a job named
``hpcgate-<service>-<port>``), connects to it, and says so with one line on stderr
(:data:`~hpcgate.forced.RELAY_READY`); from then on the channel's stdin and stdout are the
connection's two directions, and an EOF either way is a half-close. A refusal (exit status
126 and one line on stderr), a failed connection or no answer in time is a TransportError
when the stream is opened. A relay's channel is a session, counted against sshd's
MaxSessions, so it takes a channel of the pool as a command does, on the connections kept
for streams; it holds it until the stream is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import shlex
from collections.abc import Awaitable, Callable

import asyncssh

from hpcgate.forced import RELAY, RELAY_READY
from hpcgate.model.errors import TransportError
from hpcgate.transports.ssh_errors import translated
from hpcgate.transports.ssh_pool import ConnectionPool
from hpcgate.transports.ssh_stream import SshStream

Process = asyncssh.SSHClientProcess[bytes]
Opener = Callable[[asyncssh.SSHClientConnection, str], Awaitable[Process]]

OPEN_TIMEOUT = 60.0  # seconds for the relay's checks (two scheduler queries) and connect
MAX_REFUSAL = 4096  # bytes of a refusal's stderr kept


def relay_line(host: str, port: int) -> str:
    """The request hpcgate-forced runs as the relay."""
    return shlex.join([RELAY, host, str(port)])


async def open_relay(
    pool: ConnectionPool, where: str, login: str, host: str, port: int, opener: Opener
) -> SshStream:
    """A stream to ``host``:``port`` through the relay on ``where``, as ``login``; its
    session is started by ``opener`` on a leased connection."""
    hold = contextlib.AsyncExitStack()
    try:
        with translated(where, login):
            lease = await hold.enter_async_context(pool.lease(login))
            process = await opener(lease.conn, relay_line(host, port))
            hold.callback(process.close)
            await _opened(process, where, f"{host}:{port}")
    except BaseException:
        await hold.aclose()
        raise
    return SshStream(process.stdout, process.stdin, hold)


async def _opened(process: Process, where: str, target: str) -> None:
    """Return once the relay says it is connected; TransportError with what it said if it
    ends (or says something else) instead."""
    try:
        async with asyncio.timeout(OPEN_TIMEOUT):
            said = await process.stderr.readline()
            if said == RELAY_READY:
                return
            said += await process.stderr.read(MAX_REFUSAL)
    except TimeoutError:
        raise TransportError(
            f"the relay on {where} did not connect to {target} in {OPEN_TIMEOUT:g} s"
        ) from None
    text = said.decode(errors="replace").strip() or "it ended without a word"
    raise TransportError(f"{where} did not relay to {target}: {text}")
