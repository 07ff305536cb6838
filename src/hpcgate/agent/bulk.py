"""The agent's side of a bulk read (``handle_read_bulk``): the file's bytes POSTed to the
gateway on a data connection of their own, dialled out like the WebSocket (same host, same
TLS verification, same agent token), as one chunked HTTP/1.1 request body.

HTTP/1.1 by hand, not a client library: the agent's install stays small, and a body of
file pieces needs nothing but a request line, four headers and the chunk framing. The
write of each piece waits while the gateway does not read (TCP), so a slow download stops
the file's reads here. The read counts as done only once the gateway answered 2xx to the
whole body; anything else fails the request, and the gateway's reader sees a broken read.
"""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import Awaitable, Callable
from typing import cast
from urllib.parse import urlsplit

import anyio
from anyio.abc import ByteStream

from hpcgate.agentwire import messages as m
from hpcgate.model.errors import TransportError
from hpcgate.transports.filesystem import OpenFile
from hpcgate.transports.local_files import LocalFile

FILE_PIECE = 1024 * 1024  # one read of the file, one chunk of the body
CONNECT_TIMEOUT = 20.0
ANSWER_TIMEOUT = 30.0  # seconds for the gateway's answer once the body is sent
MAX_ANSWER_HEAD = 16 * 1024
_STATUS = re.compile(rb"^HTTP/1\.[01] (\d{3}) ")


class BulkSender:
    """Posts bulk reads to the gateway at ``url`` (the agent's WebSocket address)."""

    def __init__(self, url: str, token: str, context: ssl.SSLContext | None) -> None:
        parts = urlsplit(url)
        self._tls = parts.scheme == "wss"
        self._host = parts.hostname or ""
        self._port = parts.port or (443 if self._tls else 80)
        self._netloc = parts.netloc.rpartition("@")[2]
        self._prefix = parts.path.removesuffix("/agent/connect") + "/agent/streams/"
        self._token = token
        self._context = context

    async def send(self, stream: str, opened: OpenFile, offset: int, size: int) -> int:
        """The file's bytes from ``offset``, up to ``size`` or its end, as the body of the
        POST for ``stream``; their count once the gateway took them all."""
        if not m.STREAM_ID.fullmatch(stream):
            raise TransportError("a bulk read's stream id is 43 URL-safe characters")
        read = _reader(opened)
        async with await self._connect() as connection:
            sent, before = 0, self._head(stream)  # what goes out with the next chunk's size
            try:
                while sent < size:
                    piece = await read(offset + sent, min(FILE_PIECE, size - sent))
                    if not piece:
                        break
                    await connection.send(before + b"%x\r\n" % len(piece))
                    # typed bytes, but the socket and TLS streams write any buffer
                    await connection.send(cast(bytes, piece))
                    sent, before = sent + len(piece), b"\r\n"
                await connection.send(before + b"0\r\n\r\n")
            except (OSError, anyio.BrokenResourceError, anyio.EndOfStream):
                pass  # the gateway stopped reading: its answer says why, if it sent one
            code = await _answer(connection)
        if not 200 <= code < 300:
            raise TransportError(f"the gateway refused the read's data connection: HTTP {code}")
        return sent

    def _head(self, stream: str) -> bytes:
        return (
            f"POST {self._prefix}{stream} HTTP/1.1\r\n"
            f"Host: {self._netloc}\r\n"
            f"Authorization: Bearer {self._token}\r\n"
            "Content-Type: application/octet-stream\r\n"
            "Transfer-Encoding: chunked\r\n"
            "Connection: close\r\n\r\n"
        ).encode("ascii")

    async def _connect(self) -> ByteStream:
        try:
            with anyio.fail_after(CONNECT_TIMEOUT):
                if self._tls:
                    return await anyio.connect_tcp(
                        self._host,
                        self._port,
                        ssl_context=self._context or ssl.create_default_context(),
                        tls_hostname=self._host,
                    )
                return await anyio.connect_tcp(self._host, self._port)
        except (OSError, TimeoutError) as exc:
            raise TransportError(f"the read's data connection failed: {exc}") from None


def _reader(opened: OpenFile) -> Callable[[int, int], Awaitable[bytes | bytearray]]:
    """How the file's pieces are read: a file of this machine's mostly without a worker
    thread (:meth:`LocalFile.read_into`), into a new buffer each piece (the connection may
    keep part of one queued after its send returned: never written again); any other file
    by its ``read``."""
    if not isinstance(opened, LocalFile):
        return opened.read

    async def read(offset: int, size: int) -> bytearray:
        piece = bytearray(size)
        with memoryview(piece) as view:
            done = await opened.read_into(offset, view)
        return piece if done == size else piece[:done]  # short: at the end of the file

    return read


async def _answer(connection: ByteStream) -> int:
    """The status code of the gateway's answer (0: none came)."""
    head = b""
    with (
        anyio.move_on_after(ANSWER_TIMEOUT),
        contextlib.suppress(OSError, anyio.BrokenResourceError, anyio.EndOfStream),
    ):
        while b"\r\n" not in head and len(head) < MAX_ANSWER_HEAD:
            head += await connection.receive(4096)
    found = _STATUS.match(head)
    return int(found.group(1)) if found else 0
