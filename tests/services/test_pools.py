"""A replica's connection pool after a burst of requests at once: it keeps only a few of
the connections idle (httpcore 1.0's pool costs O(connections^2) per ended request when
it keeps hundreds idle), and every request of the burst is answered."""

from __future__ import annotations

import anyio
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from hpcgate.services.proxy import IDLE_KEPT_PER_REPLICA, Pools
from hpcgate.transports.local import LocalTransport

BURST = IDLE_KEPT_PER_REPLICA + 40


async def _answer_slowly(stream: SocketStream) -> None:
    """HTTP/1.1 with keep-alive: each request answered 0.3 s after it came."""
    reader = BufferedByteReceiveStream(stream)
    async with stream:
        while True:
            try:
                await reader.receive_until(b"\r\n\r\n", 65536)
            except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                return
            await anyio.sleep(0.3)
            await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")


async def _burst(port: int) -> None:
    pools = Pools()
    pool = pools.get(1, LocalTransport(), None)
    answers: list[int] = []

    async def one() -> None:
        answer = await pool.request("GET", f"http://127.0.0.1:{port}/")
        answers.append(answer.status)

    async with anyio.create_task_group() as group:
        for _ in range(BURST):
            group.start_soon(one)
    assert answers == [200] * BURST
    assert 0 < len(pool.connections) <= IDLE_KEPT_PER_REPLICA
    assert all(connection.is_idle() for connection in pool.connections)
    answer = await pool.request("GET", f"http://127.0.0.1:{port}/")  # a kept one still works
    assert answer.status == 200
    await pools.close_all()


async def test_a_burst_leaves_few_idle_connections() -> None:
    """Against a real HTTP server on 127.0.0.1 that takes many connections at once."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", backlog=BURST * 2)
    port = listener.extra(SocketAttribute.local_port)  # noqa: S610 (anyio, not SQL)
    with anyio.fail_after(30):
        async with listener, anyio.create_task_group() as group:
            group.start_soon(listener.serve, _answer_slowly)
            await _burst(port)
            group.cancel_scope.cancel()
