"""The gateway's HTTP server protocol sends what an answer writes in one turn of the event
loop as one TCP segment (a small answer's head and body together), and a streamed answer's
pieces as they come, in segments of their own. Counted by the kernel: the client socket's
``tcpi_data_segs_in`` (Linux), against a real uvicorn server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import pytest
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from hpcgate.api.http_server import GatheringProtocol
from tests.support.asgi_server import serving

Message = MutableMapping[str, Any]
REQUESTS = 20
_DATA_SEGS_IN = 152  # offset of tcpi_data_segs_in in Linux's struct tcp_info


async def app(
    scope: Message, receive: Callable[[], Awaitable[Message]], send: Callable[..., Any]
) -> None:
    """``/small``: head and body sent one after the other; ``/stream``: the body a turn
    of the loop later."""
    assert scope["type"] == "http"
    headers = [(b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if scope["path"] == "/stream":
        await asyncio.sleep(0.05)
    await send({"type": "http.response.body", "body": b"hello"})


def _segments_per_answer(port: int, path: str) -> float:
    """Data segments the client receives per answer, over REQUESTS on one connection."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        before = _data_segments_in(sock)
        for _ in range(REQUESTS):
            sock.sendall(f"GET {path} HTTP/1.1\r\nhost: t\r\n\r\n".encode())
            answer = b""
            while not answer.endswith(b"hello"):
                answer += sock.recv(65536)
        return (_data_segments_in(sock) - before) / REQUESTS


def _data_segments_in(sock: socket.socket) -> int:
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("I", info, _DATA_SEGS_IN)[0])


@pytest.mark.parametrize(
    ("protocol", "small"), [(GatheringProtocol, 1.0), (HttpToolsProtocol, 2.0)]
)
async def test_a_small_answer_is_one_segment(
    protocol: type[asyncio.Protocol], small: float
) -> None:
    """uvicorn's own protocol (the second case) sends two: the figure the test tells apart."""
    async with serving(app, protocol) as port:
        assert await asyncio.to_thread(_segments_per_answer, port, "/small") == small


async def test_pieces_of_separate_turns_go_out_as_they_come() -> None:
    async with serving(app, GatheringProtocol) as port:
        assert await asyncio.to_thread(_segments_per_answer, port, "/stream") == 2.0
