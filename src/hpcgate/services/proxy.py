"""The proxy: a request to a service goes to its least busy ready replica, streamed both
ways, through the replica's pooled HTTP/1.1 connections (httpcore over the transport).

A request that finds no ready replica waits (up to the configured bound) while the
controller starts one, then is answered 503 with Retry-After. A replica that refuses the
connection or answers garbage gives 502, one that does not answer in time 504; either way
it takes no more requests until a health check of the controller finds it good again.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import anyio
import httpcore
from websockets.utils import generate_key

from hpcgate.accounts import Account
from hpcgate.model.errors import BadGateway, GatewayTimeout, NoReplica
from hpcgate.services import sockets
from hpcgate.services.backend import TransportBackend
from hpcgate.services.sockets import HANDSHAKE, Refusal, ReplicaSocket, upgrade_headers
from hpcgate.services.traffic import Route, Traffic
from hpcgate.transports.base import Streams

log = logging.getLogger(__name__)

Headers = Sequence[tuple[bytes, bytes]]
#: Headers of one hop only (RFC 9110 7.6.1), and what the gateway itself answers to.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"host",
    }
)
FAILURES = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
)
#: Failures of a request before anything of it was sent: it can go to another replica.
NOT_SENT = (httpcore.ConnectError, httpcore.ConnectTimeout)
FAILOVERS = 3  # replicas a request may be passed over from
CONNECT_SECONDS = 10.0
HEALTH_SECONDS = 5.0  # the whole health check, from connecting to the end of the body
HEALTH_BODY_MAX = 65536  # a health check reads no more of the answer than this
RETRY_AFTER = 10.0
CONNECTIONS_PER_REPLICA = 1024
# httpcore 1.0's pool walks all its connections for each idle one whenever a request
# ends: with hundreds kept idle, ending a request costs O(connections^2). Above this many
# connections it closes, not keeps, a connection a request leaves idle, so few stay idle.
IDLE_KEPT_PER_REPLICA = 64


class BrokenAnswer(Exception):
    """The replica's answer broke off after its status was passed on: the caller's answer
    must be cut off too (its connection closed), never ended as if it were whole."""


@dataclass(frozen=True, slots=True)
class Answer:
    """The replica's answer: its status and headers now, its body as it comes (raising
    :class:`BrokenAnswer` if the replica breaks it off)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: AsyncIterator[bytes]


def end_to_end(headers: Headers, also: frozenset[bytes] = frozenset()) -> list[tuple[bytes, bytes]]:
    """The headers that go on to the next hop: not the hop-by-hop ones, nor those the
    ``Connection`` header names, nor ``also``."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    dropped = HOP_BY_HOP | named | also
    return [(name, value) for name, value in headers if name.lower() not in dropped]


def request_headers(headers: Headers, route: Route) -> list[tuple[bytes, bytes]]:
    """What the replica gets: the caller's headers without its token and the hop-by-hop
    ones, for the replica's own host; a body of unknown length goes chunked."""
    kept = end_to_end(headers, frozenset({b"authorization"}))
    chunked = any(n.lower() == b"transfer-encoding" and b"chunked" in v.lower() for n, v in headers)
    host = f"{route.address}:{route.port}".encode()
    extra = [(b"transfer-encoding", b"chunked")] if chunked else []
    return [(b"host", host), *kept, *extra]


def _failure(exc: Exception) -> str:
    if isinstance(exc, httpcore.ConnectError):
        return f"the replica refused the connection: {exc}"
    if isinstance(exc, httpcore.RemoteProtocolError) and str(exc).startswith("Server disconn"):
        return "the replica closed the connection without answering"
    if isinstance(exc, httpcore.ProtocolError):
        return "the replica's answer is not HTTP"
    return "the replica broke the connection off"


class Pools:
    """One connection pool per replica, made on first use, closed when it ends."""

    def __init__(self) -> None:
        self._pools: dict[int, httpcore.AsyncConnectionPool] = {}

    def get(
        self, replica: int, streams: Streams, account: Account | None
    ) -> httpcore.AsyncConnectionPool:
        pool = self._pools.get(replica)
        if pool is None:
            pool = self._pools[replica] = httpcore.AsyncConnectionPool(
                network_backend=TransportBackend(streams, account),
                max_connections=CONNECTIONS_PER_REPLICA,
                max_keepalive_connections=IDLE_KEPT_PER_REPLICA,
                keepalive_expiry=30.0,
            )
        return pool

    async def close(self, replica: int) -> None:
        pool = self._pools.pop(replica, None)
        if pool is not None:
            await pool.aclose()

    async def close_all(self) -> None:
        for replica in list(self._pools):
            await self.close(replica)


def _timeouts(read: float) -> dict[str, float]:
    return {"connect": CONNECT_SECONDS, "read": read, "write": read, "pool": read}


class Proxy:
    def __init__(self, traffic: Traffic, wait_seconds: float) -> None:
        self._traffic = traffic
        self._wait = wait_seconds

    async def route(self, service: int, name: str) -> Route:
        """A ready replica of the service, waiting for one as long as allowed."""
        route = await self._traffic.wait_route(service, self._wait)
        if route is None:
            raise NoReplica(
                f"service {name!r} has no ready replica after {self._wait:g} s; one is starting",
                retry_after=RETRY_AFTER,
            )
        return route

    async def forward(
        self,
        route: Route,
        method: str,
        target: bytes,
        headers: Headers,
        body: AsyncIterable[bytes],
        read_timeout: float,
    ) -> Answer:
        """Send the request to the replica; its answer, whose body streams as it is read.
        A replica that cannot be connected to (so nothing was sent) is passed over for
        another ready one. The request counts as in flight on the replica that has it
        until the body is done."""
        counted = contextlib.ExitStack()

        def request(to: Route) -> httpcore.Request:
            counted.enter_context(self._traffic.serving(to.replica))
            url = httpcore.URL(scheme=b"http", host=to.address, port=to.port, target=target)
            extensions = {"timeout": _timeouts(read_timeout)}
            sent = request_headers(headers, to)
            content = _extending(body, head, read_timeout)  # its head's deadline moves on
            return httpcore.Request(
                method, url, headers=sent, content=content, extensions=extensions
            )

        try:
            with anyio.fail_after(read_timeout) as head:  # a head trickled out is cut off too
                route, response = await self._send(route, request, counted)
        except (httpcore.TimeoutException, TimeoutError) as exc:
            counted.close()
            self._traffic.suspect(route.replica)
            raise GatewayTimeout(f"the replica did not answer within {read_timeout:g} s") from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            counted.close()
            raise BadGateway(_failure(exc)) from exc
        headers_back = end_to_end(response.headers)
        return Answer(response.status, headers_back, self._body(route, response, counted))

    async def _send(
        self,
        route: Route,
        request: Callable[[Route], httpcore.Request],
        counted: contextlib.ExitStack,
    ) -> tuple[Route, httpcore.Response]:
        """The replica that answered and its answer. A replica that fails is suspect; one
        that could not be connected to (its job just ended, say: nothing was sent) is
        passed over for the service's next usable ready replica, if it has one."""
        tries = FAILOVERS
        while True:
            try:
                return route, await route.pool.handle_async_request(request(route))
            except FAILURES as exc:
                self._traffic.suspect(route.replica)
                passed = isinstance(exc, NOT_SENT) and tries > 0
                other = self._traffic.instead_of(route.replica) if passed else None
                if other is None:
                    raise
                tries -= 1
                counted.close()
                route = other

    @contextlib.asynccontextmanager
    async def socket(
        self, route: Route, target: bytes, headers: Headers, timeout: float
    ) -> AsyncIterator[ReplicaSocket | Refusal]:
        """A WebSocket to the replica (or its answer if it refuses one), counted in flight
        on the replica while the block runs; closed after it."""
        with self._traffic.serving(route.replica):
            response, key = await self._upgrade(route, target, headers, timeout)
            try:
                if response.status == 101 and not sockets.accepted(response, key):
                    raise BadGateway("the replica's WebSocket handshake is not valid")
                if not sockets.accepted(response, key):
                    body = await sockets.read_refusal(response)
                    yield sockets.Refusal(response.status, end_to_end(response.headers), body)
                    return
                uri = f"ws://{route.address}:{route.port}{target.decode('latin-1')}"
                yield ReplicaSocket(response, uri)
            finally:
                await response.aclose()

    async def _upgrade(
        self, route: Route, target: bytes, headers: Headers, timeout: float
    ) -> tuple[httpcore.Response, str]:
        key = generate_key()
        kept = [(n, v) for n, v in request_headers(headers, route) if n.lower() not in HANDSHAKE]
        url = httpcore.URL(scheme=b"http", host=route.address, port=route.port, target=target)
        extensions = {"timeout": _timeouts(timeout)}
        request = httpcore.Request(
            "GET", url, headers=kept + upgrade_headers(key), extensions=extensions
        )
        try:
            with anyio.fail_after(timeout):
                return await route.pool.handle_async_request(request), key
        except (httpcore.TimeoutException, TimeoutError) as exc:
            self._traffic.suspect(route.replica)
            raise GatewayTimeout(f"the replica did not answer within {timeout:g} s") from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            self._traffic.suspect(route.replica)
            raise BadGateway(_failure(exc)) from exc

    async def _body(
        self, route: Route, response: httpcore.Response, counted: contextlib.ExitStack
    ) -> AsyncIterator[bytes]:
        try:
            stream = response.stream
            assert isinstance(stream, AsyncIterable)
            async for chunk in stream:
                yield chunk
        except httpcore.TimeoutException as exc:
            self._traffic.suspect(route.replica)
            log.warning("replica %s stopped answering mid-body", route.replica)
            raise BrokenAnswer(f"replica {route.replica} stopped answering mid-body") from exc
        except (httpcore.NetworkError, httpcore.ProtocolError) as exc:
            self._traffic.suspect(route.replica)
            log.warning("replica %s broke off its answer: %s", route.replica, exc)
            raise BrokenAnswer(f"replica {route.replica} broke off its answer") from exc
        finally:
            await response.aclose()
            counted.close()


async def _extending(
    body: AsyncIterable[bytes], head: anyio.CancelScope, seconds: float
) -> AsyncIterator[bytes]:
    """The request's body; each piece sent moves the deadline of the answer's head to
    ``seconds`` after it, so a slow upload is not cut off but a replica that trickles
    its head out (a line every few seconds, forever) is."""
    async for chunk in body:
        head.deadline = anyio.current_time() + seconds
        yield chunk
    head.deadline = anyio.current_time() + seconds


async def healthy(route: Route, path: str) -> bool:
    """Whether GET ``path`` on the replica answers 2xx within :data:`HEALTH_SECONDS` in
    all (never raises; reads at most :data:`HEALTH_BODY_MAX` of the body): a replica
    that trickles its answer out holds up no round of the controller."""
    url = httpcore.URL(scheme=b"http", host=route.address, port=route.port, target=path)
    headers = [(b"host", f"{route.address}:{route.port}".encode())]
    request = httpcore.Request(
        "GET", url, headers=headers, extensions={"timeout": _timeouts(HEALTH_SECONDS)}
    )
    with anyio.move_on_after(HEALTH_SECONDS):
        try:
            response = await route.pool.handle_async_request(request)
            try:
                await _drain(response, HEALTH_BODY_MAX)
            finally:
                await response.aclose()
        except FAILURES:
            return False
        return 200 <= response.status < 300
    return False


async def _drain(response: httpcore.Response, limit: int) -> None:
    """Read the answer's body, up to ``limit`` bytes (closing drops the rest)."""
    stream = response.stream
    assert isinstance(stream, AsyncIterable)
    async for chunk in stream:
        limit -= len(chunk)
        if limit < 0:
            return
