"""The proxy: a request to a service goes to its least busy ready replica, streamed both
ways, through the replica's pooled HTTP/1.1 connections (httpcore over the transport).

A request that finds no ready replica waits (up to the configured bound) while the
controller starts one, then is answered 503 with Retry-After. A replica that refuses the
connection or answers garbage gives 502, one that does not answer in time 504; either way
it takes no more requests until a health check of the controller finds it good again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Callable, Sequence
from dataclasses import dataclass

import httpcore
from websockets.utils import generate_key

from hpcgate.accounts import Account
from hpcgate.model.errors import BadGateway, GatewayTimeout, HpcgateError, NoReplica
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
    """The replica's answer: its status and headers (names in lower case) now, its body as
    it comes (raising :class:`BrokenAnswer` if the replica breaks it off; close it if it is
    not read to its end)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: AsyncGenerator[bytes, None]


def end_to_end(headers: Headers, also: frozenset[bytes] = frozenset()) -> list[tuple[bytes, bytes]]:
    """The headers that go on to the next hop, names in lower case (as ASGI has them): not
    the hop-by-hop ones, nor those the ``Connection`` header names, nor ``also``."""
    lowered = [(name.lower(), value) for name, value in headers]
    dropped = (HOP_BY_HOP | also) if also else HOP_BY_HOP
    for name, value in lowered:
        if name == b"connection":
            dropped = dropped | {token.strip().lower() for token in value.split(b",")}
    return [(name, value) for name, value in lowered if name not in dropped]


_TO_REPLICA_DROPPED = frozenset({b"authorization"})


def request_headers(headers: Headers, route: Route) -> list[tuple[bytes, bytes]]:
    """What the replica gets: the caller's headers without its token and the hop-by-hop
    ones, for the replica's own host; a body of unknown length goes chunked."""
    kept = end_to_end(headers, _TO_REPLICA_DROPPED)
    chunked = any(n.lower() == b"transfer-encoding" and b"chunked" in v.lower() for n, v in headers)
    host = (b"host", route.host)
    return [host, *kept, (b"transfer-encoding", b"chunked")] if chunked else [host, *kept]


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
            async with asyncio.timeout(read_timeout) as head:  # a head trickled out is cut off
                route, response = await self._send(route, request, counted)
        except BaseException as exc:  # the body too may raise (too large, caller gone)
            counted.close()
            failure = self._replica_failure(route, exc, read_timeout)
            if failure is None:
                raise
            raise failure from exc
        headers_back = end_to_end(response.headers)
        return Answer(response.status, headers_back, self._body(route, response, counted))

    async def _send(
        self,
        route: Route,
        request: Callable[[Route], httpcore.Request],
        counted: contextlib.ExitStack,
    ) -> tuple[Route, httpcore.Response]:
        """The replica that answered and its answer. One that could not be connected to
        (its job just ended, say: nothing was sent) is suspect, and passed over for the
        service's next usable ready replica, if it has one."""
        tries = FAILOVERS
        while True:
            try:
                return route, await route.pool.handle_async_request(request(route))
            except NOT_SENT:
                other = self._traffic.instead_of(route.replica) if tries > 0 else None
                if other is None:
                    raise
                self._traffic.suspect(route.replica)
                tries -= 1
                counted.close()
                route = other

    def _replica_failure(
        self, route: Route, exc: BaseException, timeout: float
    ) -> HpcgateError | None:
        """The replica's failure as 504 or 502 (the replica then suspect); None for an
        error that is not the replica's."""
        if isinstance(exc, httpcore.TimeoutException | TimeoutError):
            self._traffic.suspect(route.replica)
            return GatewayTimeout(f"the replica did not answer within {timeout:g} s")
        if isinstance(exc, httpcore.NetworkError | httpcore.ProtocolError):
            self._traffic.suspect(route.replica)
            return BadGateway(_failure(exc))
        return None

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
                uri = f"ws://{route.host.decode()}{target.decode('latin-1')}"
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
            async with asyncio.timeout(timeout):
                return await route.pool.handle_async_request(request), key
        except Exception as exc:
            failure = self._replica_failure(route, exc, timeout)
            if failure is None:
                raise
            raise failure from exc

    async def _body(
        self, route: Route, response: httpcore.Response, counted: contextlib.ExitStack
    ) -> AsyncGenerator[bytes, None]:
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
    body: AsyncIterable[bytes], head: asyncio.Timeout, seconds: float
) -> AsyncIterator[bytes]:
    """The request's body; each piece sent moves the deadline of the answer's head to
    ``seconds`` after it, so a slow upload is not cut off but a replica that trickles
    its head out (a line every few seconds, forever) is."""
    clock = asyncio.get_running_loop().time
    async for chunk in body:
        head.reschedule(clock() + seconds)
        yield chunk
    head.reschedule(clock() + seconds)


async def healthy(route: Route, path: str) -> bool:
    """Whether GET ``path`` on the replica answers 2xx within :data:`HEALTH_SECONDS` in
    all (never raises; reads at most :data:`HEALTH_BODY_MAX` of the body): a replica
    that trickles its answer out holds up no round of the controller."""
    url = httpcore.URL(scheme=b"http", host=route.address, port=route.port, target=path)
    headers = [(b"host", route.host)]
    request = httpcore.Request(
        "GET", url, headers=headers, extensions={"timeout": _timeouts(HEALTH_SECONDS)}
    )
    try:
        async with asyncio.timeout(HEALTH_SECONDS):
            response = await route.pool.handle_async_request(request)
            try:
                await _drain(response, HEALTH_BODY_MAX)
            finally:
                await response.aclose()
    except (*FAILURES, TimeoutError):
        return False
    return 200 <= response.status < 300


async def _drain(response: httpcore.Response, limit: int) -> None:
    """Read the answer's body, up to ``limit`` bytes (closing drops the rest)."""
    stream = response.stream
    assert isinstance(stream, AsyncIterable)
    async for chunk in stream:
        limit -= len(chunk)
        if limit < 0:
            return
