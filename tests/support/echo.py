"""A TCP echo server on 127.0.0.1 for the transports' stream tests: each connection gets
back what it sends, and ends once the client has sent its end."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator

import anyio
from anyio.abc import ByteStream, SocketStream

from tests.support.gateway_process import free_port


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[int]:
    """The server's port, while the block runs."""
    port = free_port()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=port)
    async with listener, anyio.create_task_group() as group:
        group.start_soon(listener.serve, _echo)
        try:
            yield port
        finally:
            group.cancel_scope.cancel()


async def _echo(client: SocketStream) -> None:
    async with client:
        async for chunk in client:
            await client.send(chunk)


async def assert_echoes(stream: ByteStream) -> None:
    """Through ``stream`` to the echo server: 4 MiB out and the same back, in both
    directions at once, then the end of the stream after ours; closes ``stream``."""
    data = os.urandom(4 << 20)
    received = bytearray()

    async def read() -> None:
        async for chunk in stream:
            received.extend(chunk)

    async with stream, anyio.create_task_group() as group:
        group.start_soon(read)
        for start in range(0, len(data), 100_000):
            await stream.send(data[start : start + 100_000])
        await stream.send_eof()
    assert received == data
