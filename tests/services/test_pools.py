"""A replica's connection pool against real HTTP servers on 127.0.0.1: after a burst of
requests at once every request is answered, each on a connection of its own, and only a
few of the connections are kept idle afterwards (the rest are closed, not left open for
nothing); an idle connection the replica has closed is not reused; a kept connection the
replica closes as a request goes out costs a body given whole no 502 (it is sent again on a
new connection); a HEAD's answer has no body, whatever its content-length says."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from hpcgate.model.errors import BadGateway
from hpcgate.services.pool import IDLE_KEPT_PER_REPLICA, Pools, ReplicaPool
from hpcgate.services.proxy import Proxy
from hpcgate.services.traffic import Route, Traffic
from hpcgate.transports.local import LocalTransport

BURST = IDLE_KEPT_PER_REPLICA + 40
Test = Callable[[int], Awaitable[None]]


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


async def _answer_once(stream: SocketStream) -> None:
    """One request answered as if the connection stayed open, then the connection closed
    (a server's keep-alive running out between two requests)."""
    reader = BufferedByteReceiveStream(stream)
    async with stream:
        head = await reader.receive_until(b"\r\n\r\n", 65536)
        body = b"" if head.startswith(b"HEAD") else b"ok"
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n" + body)


async def _get(pool: ReplicaPool, port: int, method: bytes = b"GET") -> tuple[int, bytes]:
    connection = await pool.take("127.0.0.1", port)
    try:
        await connection.send(method, b"/", [(b"host", b"127.0.0.1")])
        status, _ = await connection.head()
        body = b""
        while (chunk := await connection.piece(5.0)) is not None:
            body += chunk
        return status, body
    finally:
        await pool.give_back(connection)


async def _burst(port: int) -> None:
    pools = Pools()
    pool = pools.get(1, LocalTransport(), None)
    answers: list[tuple[int, bytes]] = []

    async def one() -> None:
        answers.append(await _get(pool, port))

    async with anyio.create_task_group() as group:
        for _ in range(BURST):
            group.start_soon(one)
    assert answers == [(200, b"ok")] * BURST
    assert pool.idle == IDLE_KEPT_PER_REPLICA
    assert await _get(pool, port) == (200, b"ok")  # a kept one still works
    assert pool.idle == IDLE_KEPT_PER_REPLICA  # and was given back
    await pools.close_all()
    assert pool.idle == 0


async def _serving(handler: Callable[[SocketStream], Awaitable[None]], test: Test) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", backlog=BURST * 2)
    port = listener.extra(SocketAttribute.local_port)  # noqa: S610 (anyio, not SQL)
    with anyio.fail_after(30):
        async with listener, anyio.create_task_group() as group:
            group.start_soon(listener.serve, handler)
            await test(port)
            group.cancel_scope.cancel()


async def test_a_burst_leaves_few_idle_connections() -> None:
    """Against a server that takes many connections at once."""
    await _serving(_answer_slowly, _burst)


async def _after_close(port: int) -> None:
    pool = Pools().get(1, LocalTransport(), None)
    assert await _get(pool, port) == (200, b"ok")
    assert pool.idle == 1  # kept: the answer did not say the connection closes
    await anyio.sleep(0.2)  # the server has closed it by now
    assert await _get(pool, port) == (200, b"ok")  # on a new connection, not a 502
    await pool.aclose()


async def test_an_idle_connection_the_replica_closed_is_not_reused() -> None:
    await _serving(_answer_once, _after_close)


async def _answer_then_close_at_the_next(stream: SocketStream) -> None:
    """A POST of 5 bytes answered, then the connection closed unanswered when the next
    request's head comes: a server closing a kept connection just as a request goes out
    (llama.cpp's server closes one a moment after each streamed answer)."""
    reader = BufferedByteReceiveStream(stream)
    async with stream:
        await reader.receive_until(b"\r\n\r\n", 65536)
        await reader.receive_exactly(5)
        await stream.send(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        await reader.receive_until(b"\r\n\r\n", 65536)


async def _streamed(body: bytes) -> AsyncIterator[bytes]:
    yield body


async def _post(proxy: Proxy, route: Route, body: bytes | AsyncIterator[bytes]) -> bytes:
    answer = await proxy.forward(route, "POST", b"/", [(b"content-length", b"5")], body, 5.0)
    assert answer.status == 200
    return b"".join([chunk async for chunk in answer.body])


async def _closed_as_sent(port: int) -> None:
    pool = Pools().get(1, LocalTransport(), None)
    route, proxy = Route(1, "127.0.0.1", port, pool), Proxy(Traffic(), 1.0)
    assert await _post(proxy, route, b"hello") == b"ok"
    assert pool.idle == 1
    assert await _post(proxy, route, b"hello") == b"ok"  # the kept one closed: sent again
    assert pool.idle == 1
    with pytest.raises(BadGateway):  # a body that streams in cannot be sent again
        await _post(proxy, route, _streamed(b"hello"))
    await pool.aclose()


async def test_a_kept_connection_closed_as_a_request_goes_out_costs_a_whole_body_no_502() -> None:
    await _serving(_answer_then_close_at_the_next, _closed_as_sent)


async def _head(port: int) -> None:
    pool = Pools().get(1, LocalTransport(), None)
    assert await _get(pool, port, b"HEAD") == (200, b"")  # and no wait for 2 bytes
    await pool.aclose()


async def test_the_answer_to_a_head_has_no_body() -> None:
    await _serving(_answer_once, _head)
