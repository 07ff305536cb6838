"""The events of every invocation the gateway follows on one worker, over one long-lived
connection to it (the worker's ``GET /follow``, upgraded): a held stream then costs the
gateway its client's descriptor only, not a second one to the worker.

**The contract** (the worker's side is in :mod:`hpcgate.worker`). The gateway opens the
connection with ``GET /follow``, ``Upgrade: hpcgate-events`` and the pool's secret; the
worker answers ``101``. From then on both sides send lines:

- gateway to worker, JSON objects: ``{"op": "follow", "id", "after", "credit"}`` (the
  invocation's events after seq ``after``; a follow of an ID already followed on the
  connection replaces it), ``{"op": "credit", "id", "bytes"}`` (more credit),
  ``{"op": "stop", "id"}``;
- worker to gateway, ``ID`` + one space + a JSON object: an event line exactly as the
  events stream has it (``{"seq", "type", "data"...}``, sealed ones as they are), or, with
  no ``seq``, the end of that follow: ``{"status", "error"[, "oldest"]}`` (404, 410 and 400
  as the events request answers them; 409 when another reader took the events over).

**Backpressure per invocation.** The worker sends a follow's events only as far as its
credit (bytes of event lines, newlines included, IDs not), which starts at :data:`WINDOW`
and which the gateway gives back as the follow's reader takes the events; an invocation
whose client is slow runs out of credit, its events wait in the worker (whose own buffer
then blocks the function's yields), and the others flow on: the gateway reads the shared
connection at once, whatever any client does, into buffers bounded by the credit. A worker
that sends past its credit broke the contract: that follow fails (``Broken``).

**Order and once.** Each follow takes its events in seq order, each once: one at or below
the last taken is dropped (a stop and a new follow of the same ID may cross an event in
flight), one past the next is a gap (``Broken``). A follow ends with its final event.

**A lost worker.** The connection ending (the worker died, its replica ended and the
controller closed the pool) fails every follow on it with ``Broken``: the invocations end
``WorkerLost`` at once, as when a per-invocation events request broke off. A worker from
before this connection existed answers ``/follow`` with 404: its events are then read one
request per invocation (:func:`hpcgate.functions.link.events`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from hpcgate.functions import link
from hpcgate.functions.link import Broken, LinkError, NotSent, Refused
from hpcgate.model.errors import HpcgateError
from hpcgate.services import connection as replica
from hpcgate.services.connection import Connection
from hpcgate.services.pool import ReplicaPool
from hpcgate.services.traffic import Route

Event = dict[str, Any]
WINDOW = 256 << 10  # bytes of a follow's events the worker may send ahead of its reader
OVERRUN = 2 * WINDOW + link.LINE_MAX  # a follow's buffer past this: the worker broke it
UPGRADE = b"hpcgate-events"


class Follow:
    """One invocation's events as the connection brings them, until its reader takes them."""

    def __init__(self, mux: Mux, key: str, after: int) -> None:
        self.mux = mux
        self.key = key
        self.last = after  # the seq of the last event taken in
        self.pending: list[Event] = []
        self.size = 0  # bytes of the events pending, as the worker counts them
        self.owed = 0  # bytes the reader took that are not yet given back as credit
        self.ready = asyncio.Event()
        self.error: LinkError | None = None
        self.taken = False  # a run's: the worker said it has the invocation

    def arrived(self, event: Event, size: int) -> None:
        """One event line of ``size`` bytes for this follow (the reading task's)."""
        seq = event["seq"]
        if seq <= self.last:
            return  # already taken: an event in flight across a stop and a new follow
        if seq != self.last + 1:
            self.fail(Broken(f"the worker skipped from event {self.last} to {seq}"))
            return
        self.last = seq
        self.pending.append(event)
        self.size += size
        if self.size > OVERRUN:
            self.fail(Broken("the worker sent more events than its credit"))
        self.ready.set()

    def ended(self, body: dict[str, Any]) -> None:
        """The worker ended this follow without its final event: why, as a status."""
        status = body.get("status")
        if status in (200, 201):  # a run taken (201), or known already (200): it goes on
            self.taken = True
            self.ready.set()
        elif status == 409:
            self.fail(Broken("another reader took the invocation's events over"))
        else:
            self.fail(Refused(status if isinstance(status, int) else 502, body))

    def fail(self, error: LinkError) -> None:
        if self.error is None:
            self.error = error
        self.ready.set()

    async def batches(self) -> AsyncIterator[list[Event]]:
        """The events as they come, in batches (each what arrived since the last one was
        taken), to the final one; each batch taken is given back to the worker as credit."""
        while True:
            while not self.pending and self.error is None:
                self.ready.clear()
                await self.ready.wait()
            if not self.pending:
                assert self.error is not None
                raise self.error
            batch, self.pending = self.pending, []
            await self._give_back(self.size)
            self.size = 0
            final = link.final_at(batch)
            if final is not None:
                yield batch[: final + 1]
                return
            yield batch

    async def _give_back(self, taken: int) -> None:
        """Credit the worker with what the reader took, in turns of half the window."""
        self.owed += taken
        if self.owed >= WINDOW // 2:
            owed, self.owed = self.owed, 0
            await self.mux.send({"op": "credit", "id": self.key, "bytes": owed})


class Mux:
    """One worker's multiplexed connection: the follows on it, and the task reading it."""

    def __init__(self, pool: ReplicaPool, connection: Connection) -> None:
        self.pool = pool
        self.connection = connection
        self.follows: dict[str, Follow] = {}
        self.broken: LinkError | None = None
        self._writing = asyncio.Lock()
        self._reading: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, route: Route, secret: str | None) -> Mux | None:
        """The worker's multiplexed connection (None: a worker without one)."""
        try:
            connection = await route.pool.take(route.address, route.port)
        except replica.NotSent as exc:
            raise NotSent(str(exc)) from exc
        try:
            async with asyncio.timeout(link.CALL_SECONDS):
                await connection.send(b"GET", b"/follow", _headers(route, secret))
                status, _ = await connection.head()
        except (replica.ReplicaError, HpcgateError, TimeoutError) as exc:
            await route.pool.discard(connection)
            raise Broken(str(exc) or type(exc).__name__) from exc
        if status != 101:
            await route.pool.discard(connection)
            if status == 404:
                return None
            raise Refused(status, {})
        mux = cls(route.pool, connection)
        mux._reading = asyncio.ensure_future(mux._read(connection.switched()))
        return mux

    def follow(self, key: str, after: int) -> AsyncGenerator[list[Event], None]:
        """The invocation's events after seq ``after`` to its final one, in batches."""
        command = {"op": "follow", "id": key, "after": after, "credit": WINDOW}
        return self._consume(self._register(key, after), command)

    async def run(self, key: str, body: dict[str, Any]) -> AsyncGenerator[list[Event], None]:
        """Hand the invocation to the worker (``body``: its ``input`` and ``seal``), once
        it said it has it; then its events from the start, in batches. Refused as the
        worker refused it (503: busy), Broken if it did not answer in time."""
        follow = self._register(key, 0)
        events = self._consume(follow, None)
        try:
            await self.send({"op": "run", "id": key, **body, "credit": WINDOW})
            async with asyncio.timeout(link.CALL_SECONDS):
                while not follow.taken and follow.error is None:
                    follow.ready.clear()
                    await follow.ready.wait()
        except TimeoutError:
            follow.fail(Broken("the worker did not take the invocation in time"))
        if not follow.taken:
            await events.aclose()
            assert follow.error is not None
            raise follow.error
        return events

    def _register(self, key: str, after: int) -> Follow:
        old = self.follows.pop(key, None)
        if old is not None:  # a second reader of it here: as a second events request
            old.fail(Broken("another reader took the invocation's events over"))
        follow = self.follows[key] = Follow(self, key, after)
        if self.broken is not None:
            follow.fail(self.broken)
        return follow

    async def _consume(
        self, follow: Follow, command: dict[str, Any] | None
    ) -> AsyncGenerator[list[Event], None]:
        """The follow's batches (``command`` sent first, if any); stopped on the worker if
        its reader leaves before the end."""
        ended = False
        try:
            if command is not None:
                await self.send(command)
            async for batch in follow.batches():
                yield batch
            ended = True
        finally:
            if self.follows.get(follow.key) is follow:
                del self.follows[follow.key]
                if not ended and self.broken is None:
                    with contextlib.suppress(LinkError):
                        await self.send({"op": "stop", "id": follow.key})

    async def send(self, command: dict[str, Any]) -> None:
        """One command line; a connection that cannot take it in time is broken."""
        if self.broken is not None:
            raise self.broken
        data = json.dumps(command, separators=(",", ":")).encode() + b"\n"
        try:
            async with self._writing, asyncio.timeout(link.CALL_SECONDS):
                await self.connection.write(data)
        except (replica.ReplicaError, TimeoutError) as exc:
            self._break(Broken(f"the worker's events connection: {exc or 'too slow'}"))
            raise self.broken or Broken("the worker's events connection broke") from exc

    async def _read(self, start: bytes) -> None:
        try:
            async for lines in _lines(self.connection, start):
                for line in lines:
                    self._dispatch(line)
            self._break(Broken("the worker closed its events connection"))
        except LinkError as exc:
            self._break(exc)
        except replica.ReplicaError as exc:
            self._break(Broken(exc.reason))
        finally:
            await self.pool.discard(self.connection)

    def _dispatch(self, line: bytes) -> None:
        key, _, rest = line.partition(b" ")
        follow = self.follows.get(key.decode("ascii", "replace"))
        if follow is None:
            return  # a follow that ended here: what was in flight for it
        found = _object(rest)
        if "seq" in found:
            follow.arrived(link.checked(found), len(rest) + 1)
        else:
            follow.ended(found)

    def _break(self, error: LinkError) -> None:
        """Fail every follow: the connection is gone."""
        if self.broken is None:
            self.broken = error
        for follow in self.follows.values():
            follow.fail(error)
        self.follows.clear()

    async def aclose(self) -> None:
        self._break(Broken("the gateway closed the worker's events connection"))
        if self._reading is not None:
            self._reading.cancel()
            await asyncio.gather(self._reading, return_exceptions=True)


def _headers(route: Route, secret: str | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", route.host), (b"upgrade", UPGRADE), (b"connection", b"upgrade")]
    if secret is not None:
        headers.append((link.SECRET_HEADER, secret.encode()))
    return headers


async def _lines(connection: Connection, start: bytes) -> AsyncIterator[list[bytes]]:
    """The complete lines of each read (a line's pieces joined once it ends)."""
    parts: list[bytes] = []
    size = 0
    data = start
    while True:
        if not data:
            data = await connection.read()
            if not data:
                return
        if b"\n" not in data:
            parts.append(data)
            size += len(data)
            if size > link.LINE_MAX + 100:
                raise Broken("an event of the worker's is too large")
            data = b""
            continue
        head, *middle, tail = data.split(b"\n")
        yield [b"".join([*parts, head]), *middle]
        parts, size, data = [tail], len(tail), b""


def _object(text: bytes) -> dict[str, Any]:
    try:
        found = json.loads(text)
    except ValueError:
        raise Broken("the worker sent a line that is not JSON") from None
    if not isinstance(found, dict):
        raise Broken("the worker sent a line that is not a JSON object")
    return found


class Muxes:
    """The multiplexed connection of each worker the gateway follows events on, opened on
    first use (one at a time per worker) and forgotten when it breaks."""

    def __init__(self) -> None:
        self._opened: dict[ReplicaPool, asyncio.Future[Mux | None]] = {}

    async def events(
        self, route: Route, key: str, after: int, secret: str | None
    ) -> AsyncGenerator[list[Event], None]:
        """As :func:`hpcgate.functions.link.events`, over the worker's multiplexed
        connection when it has one."""
        mux = await self._mux(route, secret)
        stream = link.events(route, key, after, secret) if mux is None else mux.follow(key, after)
        async with contextlib.aclosing(stream):
            async for batch in stream:
                yield batch

    async def run(
        self,
        route: Route,
        key: str,
        value: dict[str, Any],
        secret: str | None,
        seal: dict[str, Any] | None,
    ) -> AsyncGenerator[list[Event], None] | None:
        """Hand the invocation to the worker over its multiplexed connection, and its
        events from the start (see :meth:`Mux.run`); None for a worker without one (the
        caller submits with :func:`hpcgate.functions.link.submit`)."""
        mux = await self._mux(route, secret)
        if mux is None:
            return None
        body: dict[str, Any] = {"input": value}
        if seal is not None:
            body["seal"] = seal
        return await mux.run(key, body)

    async def _mux(self, route: Route, secret: str | None) -> Mux | None:
        opened = self._opened.get(route.pool)
        if opened is None or _spent(opened):
            self._forget_spent()  # a replica's ended: its pool is never asked for again
            opened = self._opened[route.pool] = asyncio.ensure_future(Mux.open(route, secret))
        try:
            return await asyncio.shield(opened)
        except LinkError:
            if self._opened.get(route.pool) is opened:
                del self._opened[route.pool]
            raise

    def _forget_spent(self) -> None:
        for pool, opened in list(self._opened.items()):
            if _spent(opened):
                del self._opened[pool]

    async def aclose(self) -> None:
        for opened in list(self._opened.values()):
            opened.cancel()
            if opened.done() and not opened.cancelled() and opened.exception() is None:
                mux = opened.result()
                if mux is not None:
                    await mux.aclose()
        self._opened.clear()


def _spent(opened: asyncio.Future[Mux | None]) -> bool:
    """Whether the connection opened (or failed to open) is of no more use."""
    if not opened.done():
        return False
    if opened.cancelled() or opened.exception() is not None:
        return True
    mux = opened.result()
    return mux is not None and mux.broken is not None
