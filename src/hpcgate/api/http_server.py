"""The gateway's HTTP/1.1 server protocol: uvicorn's (httptools), writing what an answer
sends in one turn of the event loop as one ``send`` to the socket.

uvicorn writes an answer's head as soon as the application starts it and its body as each
piece comes, each straight to the socket: a small answer costs two or three sends, and
the client is woken for each (the head, the body, a chunked answer's last chunk). Here the
writes of one loop turn are gathered and sent together at the end of it; a streamed
answer's pieces that come in separate turns still go out as they come. A request body's
pieces reach the application as httptools made them, not copied twice more.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.flow_control import HIGH_WATER_LIMIT
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

#: Writes held back for the end of the loop's turn, at most; beyond, they go out at once.
GATHERED_MAX = 64 << 10


class GatheringTransport:
    """A transport whose writes wait for the end of the loop's turn, then go out in one
    write (and before the connection is closed); all else is the socket's transport."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        if not self._pending:
            if len(data) >= GATHERED_MAX:  # a large piece gains nothing from waiting
                self._transport.write(data)
                return
            self._loop.call_soon(self.flush)
        self._pending.append(bytes(data))
        self._size += len(data)
        if self._size >= GATHERED_MAX:  # the socket's flow control sees it now
            self.flush()

    def flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending, self._size = [], 0
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class GatheringProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol over a :class:`GatheringTransport`, handing a request
    body's pieces on without copying them."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        gathering = GatheringTransport(transport, self.loop)
        super().connection_made(gathering)  # type: ignore[arg-type]

    def on_body(self, body: bytes) -> None:
        """A piece of the request's body. uvicorn appends each to a bytearray and hands the
        application a bytes copy of that: two copies of every byte of an upload or of an
        agent's data connection. A piece that finds nothing waiting is kept as it is
        (``bytes()`` of a bytes object, which uvicorn's ``receive`` takes, is that
        object); pieces that come while one waits are joined in a bytearray as before
        (never ``bytes +=``: a body of one-byte chunks would cost quadratic copies)."""
        cycle = self.cycle
        if cycle.body or cycle.response_complete or self.parser.should_upgrade():
            if isinstance(cycle.body, bytes):  # the piece kept above: extended in place now
                cycle.body = bytearray(cycle.body)
            super().on_body(body)
            return
        cycle.body = body  # type: ignore[assignment]  # taken with bytes(), then reset
        if len(body) > HIGH_WATER_LIMIT:
            self.flow.pause_reading()
        cycle.message_event.set()
