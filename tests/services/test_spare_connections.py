"""The spare connection a routed replica's pool opens ahead, against real HTTP servers on
127.0.0.1 that count the connections they accept: against a replica that closes each
connection after answering (as llama.cpp's server does), every request after the first
few finds a spare connected (accepted connections = requests + the one spare left); a
spare the replica closed while it waited costs the request nothing (it connects anew); a
replica that keeps its connections gets no spares; a withdrawn (draining) replica's spare
is closed and no new one is opened."""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream
from anyio.streams.buffered import BufferedByteReceiveStream

from hpcgate.services.pool import Pools, ReplicaPool
from hpcgate.services.proxy import Proxy
from hpcgate.services.traffic import Route, Traffic
from hpcgate.transports.local import LocalTransport

REQUESTS = 6
OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
CLOSING = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok"


@dataclass
class Replica:
    """A server's counts: connections accepted, and those that ended without a request
    (closed by the server after ``idle_seconds``, or by the gateway: ``ended``)."""

    answer: bytes = OK
    keeps: bool = False  # answers more than one request per connection
    idle_seconds: float | None = None
    accepted: int = 0
    idle_closed: anyio.Event = field(default_factory=anyio.Event)
    ended: anyio.Event = field(default_factory=anyio.Event)

    async def serve(self, stream: SocketStream) -> None:
        self.accepted += 1
        reader = BufferedByteReceiveStream(stream)
        async with stream:
            while (request := await self._request(reader)) is None:
                await stream.send(self.answer)
                if not self.keeps:
                    return  # closed after the answer, whatever the answer said
        request.set()  # once closed: the connection ended without a request

    async def _request(self, reader: BufferedByteReceiveStream) -> anyio.Event | None:
        """None once a request came; else the event that says how the connection ended."""
        try:
            with anyio.fail_after(self.idle_seconds):
                await reader.receive_until(b"\r\n\r\n", 65536)
        except TimeoutError:
            return self.idle_closed
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
            return self.ended
        await reader.receive_exactly(5)
        return None


async def _serving(replica: Replica, test: Callable[[Route], Awaitable[None]]) -> None:
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(SocketAttribute.local_port)  # noqa: S610 (anyio, not SQL)
    pool = Pools().get(1, LocalTransport(), None)
    with anyio.fail_after(30):
        async with listener, anyio.create_task_group() as group:
            group.start_soon(listener.serve, replica.serve)
            try:
                await test(Route(1, "127.0.0.1", port, pool))
            finally:
                await pool.aclose()
                group.cancel_scope.cancel()


async def _post(traffic: Traffic, route: Route) -> bytes:
    proxy = Proxy(traffic, 1.0)
    answer = await proxy.forward(route, "POST", b"/", [(b"content-length", b"5")], b"hello", 5.0)
    assert answer.status == 200
    return b"".join([chunk async for chunk in answer.body])


async def _until(done: Callable[[], bool]) -> None:
    """Wait until ``done()`` (the test's own deadline bounds it)."""
    while not done():  # noqa: ASYNC110 (counts and a pool, no event)
        await anyio.sleep(0.002)


async def _spare_ready(pool: ReplicaPool, replica: Replica, accepted: int) -> None:
    """Wait until a spare is connected and idle, and the server has counted ``accepted``
    connections (it counts one when its handler runs, after the client is connected)."""
    await _until(lambda: pool.idle == 1 and pool.spares == 1 and replica.accepted >= accepted)


@pytest.mark.parametrize(
    ("answer", "connecting_requests"),
    [(OK, 2), (CLOSING, 1)],
    ids=["closed-after-a-kept-answer", "connection-close"],
)
async def test_a_replica_that_closes_its_connections_gets_one_spare_per_request(
    answer: bytes, connecting_requests: int
) -> None:
    """A replica that closes each connection unannounced is found out at the second
    request (its kept connection is closed); one that says ``connection: close`` at once."""
    replica = Replica(answer=answer)

    async def test(route: Route) -> None:
        traffic = Traffic()
        traffic.set_routes(7, [route])
        for done in range(1, REQUESTS + 1):
            assert await _post(traffic, route) == b"ok"
            if done >= connecting_requests:
                await _spare_ready(route.pool, replica, done + 1)
        assert replica.accepted == REQUESTS + 1  # the spare left over is the only extra
        assert route.pool.spares_opened == REQUESTS - connecting_requests + 1

    await _serving(replica, test)


async def test_a_spare_the_replica_closed_while_it_waited_costs_the_request_nothing() -> None:
    replica = Replica(answer=CLOSING, idle_seconds=0.1)

    async def test(route: Route) -> None:
        traffic = Traffic()
        traffic.set_routes(7, [route])
        assert await _post(traffic, route) == b"ok"
        await _spare_ready(route.pool, replica, 2)
        await replica.idle_closed.wait()  # the server closed the spare
        assert await _post(traffic, route) == b"ok"  # on a new connection, not a 502
        await _spare_ready(route.pool, replica, 4)
        assert replica.accepted == 4  # the first, the spare closed, the request's, a spare

    await _serving(replica, test)


async def test_a_replica_that_keeps_its_connections_gets_no_spare() -> None:
    replica = Replica(keeps=True)

    async def test(route: Route) -> None:
        traffic = Traffic()
        traffic.set_routes(7, [route])
        for _ in range(REQUESTS):
            assert await _post(traffic, route) == b"ok"
            assert route.pool.spares == 0
        assert replica.accepted == 1

    await _serving(replica, test)


async def test_a_withdrawn_replica_closes_its_spare_and_opens_none() -> None:
    replica = Replica(answer=CLOSING)

    async def test(route: Route) -> None:
        traffic = Traffic()
        traffic.set_routes(7, [route])
        assert await _post(traffic, route) == b"ok"
        await _spare_ready(route.pool, replica, 2)
        traffic.withdraw(1)  # draining: no new requests
        await replica.ended.wait()  # the gateway closed the spare
        assert route.pool.idle == 0
        assert await _post(traffic, route) == b"ok"  # one already routed still goes
        assert route.pool.spares == 0  # and leaves no spare behind
        await _until(lambda: replica.accepted >= 3)
        assert replica.accepted == 3

    await _serving(replica, test)


async def test_a_closed_pool_opens_no_spare() -> None:
    replica = Replica(answer=CLOSING)

    async def test(route: Route) -> None:
        traffic = Traffic()
        traffic.set_routes(7, [route])
        proxy = Proxy(traffic, 1.0)
        headers = [(b"content-length", b"5")]
        answer = await proxy.forward(route, "POST", b"/", headers, b"hello", 5.0)
        await route.pool.aclose()  # the replica ended with the answer still open
        with contextlib.suppress(Exception):
            await answer.body.aclose()
        assert route.pool.spares == 0

    await _serving(replica, test)
