"""The floor of the server stack, for bench_files.py: a bare ASGI app under the same uvicorn.

``GET /?path=`` streams a file in 1 MiB reads (each in a worker thread, as the gateway
does); ``PUT /?path=`` writes the request body to a file, gathering 1 MiB batches that a
writer task writes while the next batch arrives, and computes no checksum. No
authentication, no confinement, no database: only for the benchmark, on 127.0.0.1. What it
reaches is what any ASGI app can reach on this machine with this server.

Run, from the repository root: .venv/bin/python -m uvicorn bench.bare_asgi:app --port N
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

import anyio

Message = MutableMapping[str, Any]
BATCH = 1 << 20


async def app(
    scope: Message,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":
        return
    path = parse_qs(scope["query_string"].decode())["path"][0]
    if scope["method"] == "PUT":
        written = str(await _write(path, receive)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": written})
    else:
        await _stream(path, send)


async def _write(path: str, receive: Callable[[], Awaitable[Message]]) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sender, batches = anyio.create_memory_object_stream[bytes](0)
    total = 0

    async def writer() -> None:
        async for batch in batches:
            await anyio.to_thread.run_sync(os.write, fd, batch)

    try:
        with batches:
            async with anyio.create_task_group() as group, sender:
                group.start_soon(writer)
                pending: list[bytes] = []
                size = 0
                while True:
                    message = await receive()
                    chunk = message.get("body", b"")
                    total += len(chunk)
                    size += len(chunk)
                    pending.append(chunk)
                    if size >= BATCH or not message.get("more_body"):
                        await sender.send(b"".join(pending))
                        pending, size = [], 0
                    if not message.get("more_body"):
                        break
    finally:
        os.close(fd)
    return total


async def _stream(path: str, send: Callable[[Message], Awaitable[None]]) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        length = [(b"content-length", str(size).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": length})
        offset = 0
        while offset < size:
            data = await anyio.to_thread.run_sync(os.pread, fd, BATCH, offset)
            offset += len(data)
            await send({"type": "http.response.body", "body": data, "more_body": offset < size})
    finally:
        os.close(fd)
