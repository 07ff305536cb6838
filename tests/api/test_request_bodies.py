"""The gateway's HTTP server protocol hands a request body's pieces to the application as
httptools made them (no bytearray in between): every byte arrives once, in order, as
``bytes``, whether the application reads as fast as the pieces come or slower (then the
pieces that came meanwhile are joined), with a length or chunked, and the next request on
the same connection starts with an empty body. A chunked body starts with thousands of
one-byte chunks (each its own piece: joined in place, never copied again and again).
Against a real uvicorn server on 127.0.0.1, over a real socket."""

from __future__ import annotations

import asyncio
import hashlib
import random
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pytest

from hpcgate.api.http_server import GatheringProtocol
from tests.support.asgi_server import serving

Message = MutableMapping[str, Any]
SIZE = 6 << 20
TINY = 64 << 10  # a chunked body's first bytes come in chunks of one byte each


async def app(
    scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[..., Any]
) -> None:
    """Reads the whole body (``/slow``: a pause after each piece), answers its SHA-256,
    its length, the pieces' count and their types."""
    assert scope["type"] == "http"
    digest, size, pieces, kinds = hashlib.sha256(), 0, 0, set()
    while True:
        message = await receive()
        body = message.get("body", b"")
        kinds.add(type(body).__name__)
        digest.update(body)
        size, pieces = size + len(body), pieces + 1
        if not message.get("more_body"):
            break
        if scope["path"] == "/slow":
            await asyncio.sleep(0.002)
    text = f"{digest.hexdigest()} {size} {pieces} {','.join(sorted(kinds))}".encode()
    headers = [(b"content-length", str(len(text)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": text})


def _request(path: str, body: bytes, chunked: bool, rng: random.Random) -> list[bytes]:
    """The request's bytes in the writes a client makes: random sizes, so pieces end
    anywhere (inside a chunk's size line too)."""
    if chunked:
        framed, at = b"", 0
        while at < len(body):
            step = rng.randint(1, 300_000) if at > TINY else 1  # one-byte chunks first
            framed += b"%x\r\n" % len(body[at : at + step]) + body[at : at + step] + b"\r\n"
            at += step
        framed += b"0\r\n\r\n"
        head = f"POST {path} HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n"
    else:
        framed = body
        head = f"POST {path} HTTP/1.1\r\nhost: t\r\ncontent-length: {len(body)}\r\n\r\n"
    whole, writes, at = head.encode() + framed, [], 0
    while at < len(whole):
        step = rng.choice((1, 7, 4096, 65536, 200_000, 1 << 20))
        writes.append(whole[at : at + step])
        at += step
    return writes


def _answer(sock: socket.socket) -> str:
    answer = b""
    while b"\r\n\r\n" not in answer:
        answer += sock.recv(65536)
    head, _, rest = answer.partition(b"\r\n\r\n")
    fields = dict(line.split(b": ", 1) for line in head.split(b"\r\n")[1:])
    length = int(fields[b"content-length"])
    while len(rest) < length:
        rest += sock.recv(65536)
    assert head.startswith(b"HTTP/1.1 200"), head
    return rest.decode()


def _post_twice(port: int, path: str, chunked: bool) -> list[tuple[str, bytes]]:
    """Two requests with different random bodies on one connection; each answer with the
    body it was about."""
    rng = random.Random(f"{path}{chunked}")
    out = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for size in (SIZE, SIZE // 3):
            body = rng.randbytes(size)
            for write in _request(path, body, chunked, rng):
                sock.sendall(write)
            out.append((_answer(sock), body))
    return out


@pytest.mark.parametrize("path", ["/fast", "/slow"])
@pytest.mark.parametrize("chunked", [False, True])
async def test_every_byte_of_a_body_arrives_once_in_order_as_bytes(
    path: str, chunked: bool
) -> None:
    async with serving(app, GatheringProtocol) as port:
        answers = await asyncio.to_thread(_post_twice, port, path, chunked)
    for answer, body in answers:
        digest, size, pieces, kinds = answer.split()
        assert (digest, int(size)) == (hashlib.sha256(body).hexdigest(), len(body))
        assert kinds == "bytes"  # ASGI's body is bytes, never the server's bytearray
        assert int(pieces) > 1  # it came in pieces, so the hand-over was exercised
