"""Byte streams to a host and port on the cluster, through the login node: an SSH
``direct-tcpip`` channel (what ``ssh -L`` opens), as the account.

The login node's sshd connects onward, so the cluster sees the connection come from the
login node, and its log names the account that asked. sshd must allow it
(``AllowTcpForwarding yes`` or ``local``), and with identity ``ca`` the account's
certificate must permit it: streams therefore use connections of their own, logged in
with a certificate that has ``permit-port-forwarding`` (commands and files keep
connections that may not forward). A stream holds its connection (so the pool does not
close it as idle) until it is closed. Failures while it is open are anyio's
(BrokenResourceError), as for any anyio byte stream.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import anyio
import asyncssh
from anyio.abc import ByteStream

from hpcgate.model.errors import ForwardingProhibited, TransportError
from hpcgate.transports.ssh_errors import translated
from hpcgate.transports.ssh_pool import ConnectionPool

CLOSE_WAIT = 5.0  # seconds to wait for a closed channel's acknowledgement

# Why sshd refused a direct-tcpip channel, by its SSH_MSG_CHANNEL_OPEN_FAILURE code.
REFUSALS: dict[int, str] = {
    asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED: (
        "{where} does not let {login} open connections onward (sshd's AllowTcpForwarding,"
        " or the key's or certificate's restrictions)"
    ),
    asyncssh.OPEN_CONNECT_FAILED: "{where} could not connect to {target}",
}


class SshStream(ByteStream):
    """A channel's two directions as an anyio byte stream: a ``direct-tcpip`` channel, or
    the stdout and stdin of a relay's session (:mod:`.ssh_relay`)."""

    def __init__(
        self,
        reader: asyncssh.SSHReader[bytes],
        writer: asyncssh.SSHWriter[bytes],
        hold: contextlib.AsyncExitStack,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._hold = hold

    async def receive(self, max_bytes: int = 65536) -> bytes:
        with _broken():
            data = await self._reader.read(max_bytes)
        if not data:
            raise anyio.EndOfStream
        return data

    async def send(self, item: bytes) -> None:
        if self._writer.is_closing():
            raise anyio.ClosedResourceError
        with _broken():
            self._writer.write(item)
            await self._writer.drain()

    async def send_eof(self) -> None:
        with _broken():
            self._writer.write_eof()

    async def aclose(self) -> None:
        self._writer.close()
        try:
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await asyncio.wait_for(self._writer.channel.wait_closed(), CLOSE_WAIT)
        finally:
            await self._hold.aclose()


@contextlib.contextmanager
def _broken() -> Iterator[None]:
    """asyncssh's and the network's errors in the block as anyio's for a broken stream."""
    try:
        yield
    except (asyncssh.Error, OSError) as exc:
        raise anyio.BrokenResourceError(str(exc)) from exc


async def open_stream(
    pool: ConnectionPool, where: str, login: str, host: str, port: int
) -> SshStream:
    """A stream to ``host``:``port`` from ``where``, as ``login``."""
    hold = contextlib.AsyncExitStack()
    try:
        with translated(where, login):
            lease = await hold.enter_async_context(pool.lease(login, channel=False))
            try:
                reader, writer = await lease.conn.open_connection(host, port)
            except asyncssh.ChannelOpenError as exc:
                raise _refusal(exc, where, login, f"{host}:{port}") from exc
    except BaseException:
        await hold.aclose()
        raise
    return SshStream(reader, writer, hold)


def _refusal(exc: asyncssh.ChannelOpenError, where: str, login: str, target: str) -> TransportError:
    text = REFUSALS.get(exc.code, "{where} refused a connection to {target}")
    said = text.format(where=where, login=login, target=target)
    kind = (
        ForwardingProhibited
        if exc.code == asyncssh.OPEN_ADMINISTRATIVELY_PROHIBITED
        else TransportError
    )
    return kind(f"{said}: {exc.reason}" if exc.reason else said)
