"""One kept-alive HTTP/1.1 connection to a replica: h11 frames and parses, the transport's
byte stream (a TCP connection or an SSH channel) carries the bytes.

A request is sent with its head and first body piece in one write (a GET in one); the
answer's head is read, then its body as it comes. A connection whose exchange ended
cleanly can carry the next one. Failures are :class:`ReplicaError` subclasses, so the
proxy can tell a request that never left (another replica may take it) from one the
replica broke.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import AsyncIterable

import anyio
import h11
from anyio.abc import ByteStream, SocketAttribute

from hpcgate.accounts import Account
from hpcgate.model.errors import BadRequest, HpcgateError
from hpcgate.transports.base import Streams

READ_BYTES = 64 << 10
HEAD_MAX = 100 << 10  # the largest answer head taken (as httpcore took)
_STREAM_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class ReplicaError(Exception):
    """The exchange with a replica failed; ``reason`` says how, for the caller."""

    reason = "the replica broke the connection off"


class NotSent(ReplicaError):
    """No connection could be made (refused, unreachable, too slow): nothing was sent."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.reason = f"the replica refused the connection: {detail}"


class Broken(ReplicaError):
    """The connection broke (reset, closed, or a read or write failed)."""


class NoAnswer(Broken):
    reason = "the replica closed the connection without answering"


class NotHttp(ReplicaError):
    reason = "the replica's answer is not HTTP"


class SlowReplica(ReplicaError):
    """A read of the answer's body waited longer than allowed."""

    reason = "the replica stopped answering"


async def connect(streams: Streams, account: Account | None, host: str, port: int) -> Connection:
    """A new connection to ``host``:``port`` (:class:`NotSent` if there is none)."""
    try:
        stream = await streams.stream(host, port, account)
    except HpcgateError as exc:
        raise NotSent(exc.detail) from exc
    return Connection(stream)


Head = tuple[int, list[tuple[bytes, bytes]]]


class Connection:
    """An HTTP/1.1 client connection; one exchange at a time."""

    def __init__(self, stream: ByteStream) -> None:
        self._stream = stream
        self._h11 = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_MAX)
        # Looked up once: anyio builds its attribute table on each lookup.
        self._socket = stream.extra(SocketAttribute.raw_socket, None)  # noqa: S610 (anyio)
        self._poll: select.poll | None = None
        self.idle_since = 0.0
        self.spare = False  # opened ahead by the pool, and not used yet
        self._reused = False  # it carried an exchange before this one
        self._heard = False  # a byte of this exchange's answer came

    async def send(
        self,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        body: AsyncIterable[bytes] | bytes | None = None,
    ) -> None:
        """The request, its head joined to the first piece of its body in one write
        (:class:`~hpcgate.model.errors.BadRequest` if it is not valid HTTP/1.1)."""
        pending = self._framed(h11.Request(method=method, target=target, headers=headers))
        if isinstance(body, bytes):
            pending += self._framed(h11.Data(data=body)) if body else b""
        elif body is not None:
            async for chunk in body:
                if chunk:
                    data = self._framed(h11.Data(data=chunk))
                    await self._write(pending + data if pending else data)
                    pending = b""
        if end := pending + self._framed(h11.EndOfMessage()):  # b"" after a sized body
            await self._write(end)

    def _framed(self, event: h11.Request | h11.Data | h11.EndOfMessage) -> bytes:
        try:
            return self._h11.send(event) or b""
        except h11.LocalProtocolError as exc:
            raise BadRequest(f"the request cannot be passed on as HTTP/1.1: {exc}") from exc

    async def head(self) -> Head:
        """The answer's status and headers (names in lower case), after any 1xx but 101."""
        while True:
            event = await self._next()
            if isinstance(event, h11.Response):
                return event.status_code, list(event.headers)
            if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
                return 101, list(event.headers)

    async def piece(self, read_timeout: float | None) -> bytes | None:
        """The answer body's next piece as it comes (None at its end), each read within
        ``read_timeout``."""
        while True:
            event = await self._next(read_timeout)
            if isinstance(event, h11.Data):
                return bytes(event.data)
            if isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                return None

    def reusable(self) -> bool:
        """Whether the exchange ended cleanly and the connection may carry the next one
        (it is then made ready for it)."""
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            self._reused, self._heard = True, False
            return True
        return False

    def unheard_after_reuse(self) -> bool:
        """Whether this exchange, on a connection kept from an earlier one, failed before
        a byte of its answer came: the replica had closed the idle connection as the
        request went out (a server that closes after each streamed answer, llama.cpp's,
        does so a moment after its end), so the request was most likely never read."""
        return self._reused and not self._heard

    def stale(self) -> bool:
        """Whether an idle connection has data or its end waiting (the replica closed it):
        it is then dropped, not reused. Known for sockets only."""
        sock = self._socket
        if sock is None:
            return False
        if sock.fileno() == -1:
            return True
        if self._poll is None:
            self._poll = select.poll()
            self._poll.register(sock, select.POLLIN)
        return bool(self._poll.poll(0))

    async def _next(self, timeout: float | None = None) -> object:
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise NotHttp(str(exc)) from exc
            if event is not h11.NEED_DATA:
                return event
            data = await self.read(timeout)
            if not data and self._h11.their_state is h11.SEND_RESPONSE:
                raise NoAnswer("closed before answering")
            self._heard = True
            self._h11.receive_data(data)

    async def read(self, timeout: float | None = None) -> bytes:
        """Raw bytes (b"" at the end); for a connection switched to another protocol."""
        try:
            if timeout is None:  # the caller's deadline holds
                return await self._stream.receive(READ_BYTES)
            async with asyncio.timeout(timeout):
                return await self._stream.receive(READ_BYTES)
        except anyio.EndOfStream:
            return b""
        except TimeoutError as exc:
            raise SlowReplica("no data in time") from exc
        except _STREAM_ERRORS as exc:
            raise Broken(str(exc)) from exc

    async def _write(self, data: bytes) -> None:
        try:
            await self._stream.send(data)
        except _STREAM_ERRORS as exc:
            raise Broken(str(exc)) from exc

    async def write(self, data: bytes) -> None:
        """Raw bytes; for a connection switched to another protocol."""
        await self._write(data)

    def switched(self) -> bytes:
        """What the replica sent after its 101 (the start of the new protocol's bytes)."""
        return bytes(self._h11.trailing_data[0])

    async def aclose(self) -> None:
        await self._stream.aclose()
