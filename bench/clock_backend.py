"""The replica of bench_services.py: a bare ASGI app under uvicorn that answers on a fixed
clock, so what a proxied figure adds to a direct one is the proxy's.

- ``GET /health``: 200;
- ``GET /small``: 200 and two bytes;
- ``GET /stream?n=N&interval=S``: N chunks, chunk k due at (start + k*S) whatever the
  previous writes cost (a fixed clock, not a sleep after each write); each chunk is one
  line ``k <wall-clock time it was sent>\\n``, so a reader on this machine knows how long
  each chunk took to reach it.

With ``$CLOCK_STAMPS`` set it appends ``ready <time>`` to that file when it has started
(the cold-start figure's "backend ready"). No authentication: only for the benchmark.

Run: .venv/bin/python -m uvicorn bench.clock_backend:app --port N
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import anyio

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]
Receive = Callable[[], Awaitable[Message]]
MAX_CHUNKS = 100_000
MAX_INTERVAL = 10.0


async def app(scope: Message, receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
    elif scope["type"] == "http":
        await _http(scope, send)


async def _lifespan(receive: Receive, send: Send) -> None:
    while (message := await receive())["type"] != "lifespan.shutdown":
        if message["type"] == "lifespan.startup":
            _stamp("ready")
            await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


def _stamp(what: str) -> None:
    path = os.environ.get("CLOCK_STAMPS")
    if path:
        with open(path, "a") as stamps:
            stamps.write(f"{what} {time.time():.6f}\n")


async def _http(scope: Message, send: Send) -> None:
    path = scope["path"]
    if path == "/stream":
        query = parse_qs(scope["query_string"].decode())
        count = min(int(query.get("n", ["10"])[0]), MAX_CHUNKS)
        interval = min(float(query.get("interval", ["0.01"])[0]), MAX_INTERVAL)
        await _stream(send, count, interval)
    elif path in ("/health", "/small"):
        await _answer(send, 200, b"ok")
    else:
        await _answer(send, 404, b"no such path")


async def _answer(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _stream(send: Send, count: int, interval: float) -> None:
    headers = [(b"content-type", b"text/plain")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    start = time.monotonic()
    for index in range(count):
        await anyio.sleep(max(0.0, start + index * interval - time.monotonic()))
        line = f"{index} {time.time():.6f}\n".encode()
        await send({"type": "http.response.body", "body": line, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
