"""httpcore's network seam over the transport's byte streams.

The proxy and the health checks speak HTTP/1.1 through an ``httpcore`` connection pool, so
keep-alive, pooling, chunked bodies and the protocol's corner cases are httpcore's. Only
the connection itself is hpcgate's: :class:`TransportBackend` opens it with
``Transport.stream(host, port, account)``, a TCP connection from the gateway or an SSH
``direct-tcpip`` channel, as the account the service runs as.
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import ssl
import typing
from collections.abc import Iterator

import anyio
import httpcore
from anyio.abc import ByteStream, SocketAttribute

from hpcgate.accounts import Account
from hpcgate.model.errors import HpcgateError
from hpcgate.transports.base import Streams

_READ_ERRORS: dict[type[Exception], type[Exception]] = {
    TimeoutError: httpcore.ReadTimeout,
    anyio.BrokenResourceError: httpcore.ReadError,
    anyio.ClosedResourceError: httpcore.ReadError,
}
_WRITE_ERRORS: dict[type[Exception], type[Exception]] = {
    TimeoutError: httpcore.WriteTimeout,
    anyio.BrokenResourceError: httpcore.WriteError,
    anyio.ClosedResourceError: httpcore.WriteError,
}


@contextlib.contextmanager
def _mapped(table: dict[type[Exception], type[Exception]]) -> Iterator[None]:
    try:
        yield
    except tuple(table) as exc:
        raise next(new for old, new in table.items() if isinstance(exc, old))(str(exc)) from exc


class ByteStreamConnection(httpcore.AsyncNetworkStream):
    """An anyio byte stream as httpcore's network stream.

    Its reads and writes run on asyncio (the gateway's loop) and time out by
    ``asyncio.timeout``: anyio's cancel scope, per read and write, cost more than the read.
    """

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        # Looked up once: httpcore asks whether an idle connection is readable each time
        # it hands out a connection, and anyio builds its attribute table on each lookup.
        self._socket = stream.extra(SocketAttribute.raw_socket, None)  # noqa: S610 (anyio)
        self._poll: select.poll | None = None

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        with _mapped(_READ_ERRORS):
            async with asyncio.timeout(timeout):
                try:
                    return await self._stream.receive(max_bytes)
                except anyio.EndOfStream:
                    return b""

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            with _mapped(_WRITE_ERRORS):
                async with asyncio.timeout(timeout):
                    await self._stream.send(buffer)

    async def aclose(self) -> None:
        await self._stream.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("replicas are reached over plain HTTP")

    def get_extra_info(self, info: str) -> typing.Any:
        """``is_readable``: whether a pooled idle connection has data or its end waiting
        (a closed one is then dropped, not reused); known for sockets only."""
        if info != "is_readable":
            return None
        return self._socket is not None and self._readable(self._socket)

    def _readable(self, sock: socket.socket) -> bool:
        if sock.fileno() == -1:
            return True
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(sock, select.POLLIN)
        return bool(self._poll.poll(0))


class TransportBackend(httpcore.AsyncNetworkBackend):
    """Connections opened through a transport's streams, as one account."""

    def __init__(self, streams: Streams, account: Account | None) -> None:
        self._streams = streams
        self._account = account

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                stream = await self._streams.stream(host, port, self._account)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"{host}:{port}: no connection in time") from exc
        except HpcgateError as exc:
            raise httpcore.ConnectError(exc.detail) from exc
        return ByteStreamConnection(stream)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: typing.Iterable[typing.Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("replicas are reached over TCP")

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)
