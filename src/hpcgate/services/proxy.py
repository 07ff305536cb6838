"""The proxy: a request to a service goes to its least busy ready replica, streamed both
ways, through the replica's pooled HTTP/1.1 connections (:mod:`hpcgate.services.pool`).

A request that finds no ready replica waits (up to the configured bound) while the
controller starts one, then is answered 503 with Retry-After. A replica that refuses the
connection or answers garbage gives 502, one that does not answer in time 504; either way
it takes no more requests until a health check of the controller finds it good again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Sequence,
)
from dataclasses import dataclass

from websockets.utils import generate_key

from hpcgate.model.errors import BadGateway, GatewayTimeout, HpcgateError, NoReplica
from hpcgate.services import sockets
from hpcgate.services.connection import (
    Broken,
    Connection,
    Head,
    NotSent,
    ReplicaError,
    SlowReplica,
)
from hpcgate.services.pool import ReplicaPool
from hpcgate.services.sockets import HANDSHAKE, Refusal, ReplicaSocket, upgrade_headers
from hpcgate.services.traffic import Route, Traffic

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
FAILOVERS = 3  # replicas a request may be passed over from
HEALTH_SECONDS = 5.0  # the whole health check, from connecting to the end of the body
HEALTH_BODY_MAX = 65536  # a health check reads no more of the answer than this
RETRY_AFTER = 10.0


class BrokenAnswer(Exception):
    """The replica's answer broke off after its status was passed on: the caller's answer
    must be cut off too (its connection closed), never ended as if it were whole."""


async def _nothing() -> None:
    pass


@dataclass(frozen=True, slots=True)
class Answer:
    """The replica's answer: its status and headers (names in lower case) now, its body as
    it comes (raising :class:`BrokenAnswer` if the replica breaks it off). End it with
    :meth:`aclose` whatever happened, read or not: ``ended`` then gives back what the
    request holds (its count in flight, its connection, its usage) even if its body was
    never started, which closing the body alone would not (a generator closed before it
    started runs none of its code)."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: AsyncGenerator[bytes, None]
    ended: Callable[[], Awaitable[None]] = _nothing

    async def aclose(self) -> None:
        try:
            await self.body.aclose()
        finally:
            await self.ended()


class _Held:
    """What a request holds on a replica until its answer ends: the connection and its
    count in flight; given back once, by whichever comes first (the body's end or the
    answer's close)."""

    __slots__ = ("_connection", "_counted", "_pool")

    def __init__(self, route: Route, connection: Connection, counted: contextlib.ExitStack):
        self._pool: ReplicaPool | None = route.pool
        self._connection, self._counted = connection, counted

    async def give_back(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:
                await pool.give_back(self._connection)  # closed unless the answer was whole
            finally:
                self._counted.close()


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
#: The gateway's own cookies (its web interface's session and sign-in, and an app host's):
#: over https they are on path ``/``, so a browser sends them along to the proxy too.
GATEWAY_COOKIES = frozenset(
    prefix + name
    for prefix in (b"", b"__Host-")
    for name in (b"hpcgate_session", b"hpcgate_oidc", b"hpcgate_app")
)


def without_gateway_cookies(value: bytes) -> bytes:
    """A ``Cookie`` header without the gateway's own cookies (empty if only they were)."""
    pairs = [pair.strip() for pair in value.split(b";")]
    return b"; ".join(p for p in pairs if p and p.partition(b"=")[0] not in GATEWAY_COOKIES)


def request_headers(headers: Headers, route: Route) -> list[tuple[bytes, bytes]]:
    """What the replica gets: the caller's headers without its token, the gateway's
    cookies and the hop-by-hop ones, for the replica's own host; a body of unknown length
    goes chunked."""
    kept = [
        (name, without_gateway_cookies(value) if name == b"cookie" else value)
        for name, value in end_to_end(headers, _TO_REPLICA_DROPPED)
    ]
    kept = [(name, value) for name, value in kept if name != b"cookie" or value]
    chunked = any(n.lower() == b"transfer-encoding" and b"chunked" in v.lower() for n, v in headers)
    host = (b"host", route.host)
    return [host, *kept, (b"transfer-encoding", b"chunked")] if chunked else [host, *kept]


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
        body: AsyncIterable[bytes] | bytes,
        read_timeout: float,
    ) -> Answer:
        """Send the request to the replica; its answer, whose body streams as it is read.
        A replica that cannot be connected to (so nothing was sent) is passed over for
        another ready one. A body given whole (bytes) is sent again on a new connection
        when a kept one turns out closed before answering (:func:`_exchange`). The
        request counts as in flight on the replica that has it until the body is done."""
        counted = contextlib.ExitStack()
        try:
            async with asyncio.timeout(read_timeout) as head:  # a head trickled out is cut off
                content = body if isinstance(body, bytes) else _extending(body, head, read_timeout)
                route, connection, (status, got) = await self._send(
                    route, (method.encode(), target, headers), content, counted
                )
        except BaseException as exc:  # the body too may raise (too large, caller gone)
            counted.close()
            failure = self._replica_failure(route, exc, read_timeout)
            if failure is None:
                raise
            raise failure from exc
        held = _Held(route, connection, counted)
        body_back = self._body(route, connection, read_timeout, held)
        return Answer(status, end_to_end(got), body_back, held.give_back)

    async def _send(
        self,
        route: Route,
        request: tuple[bytes, bytes, Headers],
        body: AsyncIterable[bytes] | bytes,
        counted: contextlib.ExitStack,
    ) -> tuple[Route, Connection, Head]:
        """The replica that answered, its connection and its answer's head. One that
        could not be connected to (its job just ended, say: nothing was sent) is suspect,
        and passed over for the service's next usable ready replica, if it has one."""
        tries = FAILOVERS
        while True:
            counted.enter_context(self._traffic.serving(route.replica))
            try:
                return route, *await _exchange(route, request, body)
            except NotSent:
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
        if isinstance(exc, TimeoutError | SlowReplica):
            self._traffic.suspect(route.replica)
            return GatewayTimeout(f"the replica did not answer within {timeout:g} s")
        if isinstance(exc, ReplicaError):
            self._traffic.suspect(route.replica)
            return BadGateway(exc.reason)
        return None

    @contextlib.asynccontextmanager
    async def socket(
        self, route: Route, target: bytes, headers: Headers, timeout: float
    ) -> AsyncIterator[ReplicaSocket | Refusal]:
        """A WebSocket to the replica (or its answer if it refuses one), counted in flight
        on the replica while the block runs; closed after it."""
        with self._traffic.serving(route.replica):
            connection, (status, got), key = await self._upgrade(route, target, headers, timeout)
            try:
                if status == 101 and not sockets.accepted(status, got, key):
                    raise BadGateway("the replica's WebSocket handshake is not valid")
                if not sockets.accepted(status, got, key):
                    body = await sockets.read_refusal(connection, timeout)
                    yield sockets.Refusal(status, end_to_end(got), body)
                    return
                uri = f"ws://{route.host.decode()}{target.decode('latin-1')}"
                yield ReplicaSocket(connection, got, uri)
            finally:
                await route.pool.discard(connection)

    async def _upgrade(
        self, route: Route, target: bytes, headers: Headers, timeout: float
    ) -> tuple[Connection, Head, str]:
        key = generate_key()
        kept = [(n, v) for n, v in request_headers(headers, route) if n.lower() not in HANDSHAKE]
        try:
            async with asyncio.timeout(timeout):
                connection = await route.pool.take(route.address, route.port)
                try:
                    await connection.send(b"GET", target, kept + upgrade_headers(key))
                    return connection, await connection.head(), key
                except BaseException:
                    await route.pool.discard(connection)
                    raise
        except Exception as exc:
            failure = self._replica_failure(route, exc, timeout)
            if failure is None:
                raise
            raise failure from exc

    async def _body(
        self,
        route: Route,
        connection: Connection,
        read_timeout: float,
        held: _Held,
    ) -> AsyncGenerator[bytes, None]:
        try:
            while (chunk := await connection.piece(read_timeout)) is not None:
                yield chunk
        except SlowReplica as exc:
            self._traffic.suspect(route.replica)
            log.warning("replica %s stopped answering mid-body", route.replica)
            raise BrokenAnswer(f"replica {route.replica} stopped answering mid-body") from exc
        except ReplicaError as exc:
            self._traffic.suspect(route.replica)
            log.warning("replica %s broke off its answer: %s", route.replica, exc)
            raise BrokenAnswer(f"replica {route.replica} broke off its answer") from exc
        finally:
            await held.give_back()


async def _exchange(
    route: Route, request: tuple[bytes, bytes, Headers], body: AsyncIterable[bytes] | bytes
) -> tuple[Connection, Head]:
    """A connection to the replica with the request sent on it, and the answer's head.
    A kept connection the replica closed as the request went out (no byte of an answer
    came) is dropped and, for a body given whole, the request sent again on the next;
    each try uses up a kept connection or a new one, so they end."""
    while True:
        connection = await route.pool.take(route.address, route.port)
        try:
            return connection, await _asked(connection, route, request, body)
        except Broken:
            await route.pool.discard(connection)
            if not (isinstance(body, bytes) and connection.unheard_after_reuse()):
                raise
            log.info("replica %s closed a kept connection; the request goes again", route.replica)
        except BaseException:
            await route.pool.discard(connection)
            raise


async def _asked(
    connection: Connection,
    route: Route,
    request: tuple[bytes, bytes, Headers],
    body: AsyncIterable[bytes] | bytes,
) -> Head:
    """The answer's head. A replica that answers early and stops reading the body (a 413,
    say) is heard."""
    method, target, headers = request
    try:
        await connection.send(method, target, request_headers(headers, route), body)
    except Broken as exc:
        with contextlib.suppress(ReplicaError):
            return await connection.head()
        raise exc from None
    return await connection.head()


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
    try:
        async with asyncio.timeout(HEALTH_SECONDS):
            connection = await route.pool.take(route.address, route.port)
            try:
                await connection.send(b"GET", path.encode(), [(b"host", route.host)])
                status, _ = await connection.head()
                await _drain(connection, HEALTH_BODY_MAX)
            finally:
                await route.pool.give_back(connection)  # closed unless read to its end
    except (ReplicaError, HpcgateError, TimeoutError):
        return False
    return 200 <= status < 300


async def _drain(connection: Connection, limit: int) -> None:
    """Read the answer's body, up to ``limit`` bytes (closing drops the rest)."""
    while limit >= 0 and (chunk := await connection.piece(None)) is not None:
        limit -= len(chunk)
