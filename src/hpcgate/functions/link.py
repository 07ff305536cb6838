"""The gateway's requests to one worker, over its replica's pooled HTTP/1.1 connections
(the same transport byte streams as the service proxy's): the worker's internal API (see
the functions contract) but for its multiplexed connection, :mod:`hpcgate.functions.mux`,
which hands invocations over and follows their events when the worker has it (this
module's :func:`submit` and :func:`events` then serve a worker from before it).

Every failure is one of three: :class:`NotSent` (the connection could not be made, so the
request may go to another worker), :class:`Broken` (the worker stopped answering or broke
its answer off), :class:`Refused` (it answered with a status the request did not expect).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from hpcgate.model.errors import HpcgateError
from hpcgate.services import connection as replica
from hpcgate.services.connection import Connection
from hpcgate.services.traffic import Route

CALL_SECONDS = 10.0  # a request that is not a stream: its whole answer; a stream: its head
ANSWER_MAX = 1 << 20  # bytes of such an answer read at most
LINE_MAX = (16 << 20) * 4 // 3 + (1 << 20)  # one event's line (sealed: base64 of 16 MiB)
TYPES = frozenset({"key", "output", "result", "error"})  # key: an encrypted one's first
FINAL = frozenset({"result", "error"})
SECRET_HEADER = b"x-hpcgate-worker-secret"


class LinkError(Exception):
    """A request to a worker failed."""


class NotSent(LinkError):
    """No connection to the worker: nothing of the request reached it."""


class Broken(LinkError):
    """The worker broke the connection off or did not answer in time."""


class Refused(LinkError):
    """The worker answered a status the request does not expect."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"the worker answered {status}: {body}")
        self.status = status
        self.body = body


def _headers(route: Route, content: bytes | None, secret: str | None) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", route.host), (b"accept", b"application/json")]
    if secret is not None:  # None: a pool made before workers had one
        headers.append((SECRET_HEADER, secret.encode()))
    if content is not None:
        headers.append((b"content-type", b"application/json"))
        headers.append((b"content-length", str(len(content)).encode()))
    return headers


async def _once(content: bytes) -> AsyncIterator[bytes]:
    yield content


@asynccontextmanager
async def _exchange(
    route: Route, method: str, target: str, body: Any = None, secret: str | None = None
) -> AsyncIterator[tuple[int, Connection]]:
    """The worker's status to one request, on a pooled connection (given back at the end:
    kept only if its answer was read to the end)."""
    try:
        connection = await route.pool.take(route.address, route.port)
    except replica.NotSent as exc:
        raise NotSent(str(exc)) from exc
    content = None if body is None else json.dumps(body).encode()
    try:
        async with asyncio.timeout(CALL_SECONDS):
            sent = None if content is None else _once(content)
            await connection.send(
                method.encode(), target.encode(), _headers(route, content, secret), sent
            )
            status, _ = await connection.head()
        yield status, connection
    except (replica.ReplicaError, HpcgateError, TimeoutError) as exc:
        raise Broken(str(exc) or type(exc).__name__) from exc
    finally:
        await route.pool.give_back(connection)


async def _call(
    route: Route, method: str, target: str, body: Any = None, secret: str | None = None
) -> tuple[int, Any]:
    """The worker's status and JSON answer to one request."""
    async with _exchange(route, method, target, body, secret) as (status, connection):
        async with asyncio.timeout(CALL_SECONDS):
            data = await _read(connection, ANSWER_MAX)
    try:
        return status, json.loads(data) if data else None
    except ValueError:
        raise Broken(f"the worker's answer ({status}) is not JSON") from None


async def _read(connection: Connection, limit: int) -> bytes:
    chunks: list[bytes] = []
    while (chunk := await connection.piece(None)) is not None:
        chunks.append(chunk)
        limit -= len(chunk)
        if limit < 0:
            raise Broken("the worker's answer is too large")
    return b"".join(chunks)


async def submit(
    route: Route,
    key: str,
    value: dict[str, Any],
    secret: str | None,
    seal: dict[str, Any] | None = None,
) -> str:
    """Hand the invocation to the worker (the same id again is never run twice); its state.
    ``seal`` (``{"public_key", "tracebacks"}``) asks it to encrypt the events."""
    sent: dict[str, Any] = {"id": key, "input": value}
    if seal is not None:
        sent["seal"] = seal
    status, body = await _call(route, "POST", "/invocations", sent, secret)
    if status not in (200, 201) or not isinstance(body, dict):
        raise Refused(status, body if isinstance(body, dict) else {})
    return str(body.get("state", "queued"))


async def state(route: Route, key: str, secret: str | None) -> tuple[str, int] | None:
    """The invocation's state and event count on the worker; None if it does not know it."""
    status, body = await _call(route, "GET", f"/invocations/{key}", secret=secret)
    if status == 404:
        return None
    if status != 200 or not isinstance(body, dict):
        raise Refused(status, body if isinstance(body, dict) else {})
    events = body.get("events")
    return str(body.get("state")), events if isinstance(events, int) else 0


async def cancel(route: Route, key: str, secret: str | None) -> str | None:
    """Cancel the invocation on the worker; its state (None: the worker does not know it)."""
    status, body = await _call(route, "DELETE", f"/invocations/{key}", secret=secret)
    if status == 404:
        return None
    if status != 200 or not isinstance(body, dict):
        raise Refused(status, body if isinstance(body, dict) else {})
    return str(body.get("state"))


async def events(
    route: Route, key: str, after: int, secret: str | None
) -> AsyncGenerator[list[dict[str, Any]], None]:
    """The invocation's events after seq ``after``, as the worker sends them, until its
    final one: in batches, each the events one read brought (never empty; a final event
    ends its batch). Refused(410, {"oldest": k}) when ``after`` is older than the worker
    keeps; Broken if the stream ends without a final event."""
    target = f"/invocations/{key}/events?after={after}"
    async with _exchange(route, "GET", target, secret=secret) as (status, connection):
        if status != 200:
            async with asyncio.timeout(CALL_SECONDS):
                raise Refused(status, _object(await _read(connection, ANSWER_MAX)))
        async for batch in _batches(connection):
            final = final_at(batch)
            if final is not None:
                yield batch[: final + 1]
                return
            yield batch
        raise Broken("the worker's event stream ended before the invocation did")


def final_at(batch: list[dict[str, Any]]) -> int | None:
    """Where the batch's final event is, if it holds one."""
    for index, event in enumerate(batch):
        if event["type"] in FINAL:
            return index
    return None


async def _batches(connection: Connection) -> AsyncIterator[list[dict[str, Any]]]:
    """The events of each piece of the answer that ends a line, as JSON objects (a line's
    pieces joined once it ends): one batch per read, so a fast stream costs one pass
    through the layers above per read rather than per event."""
    parts: list[bytes] = []
    size = 0
    while (chunk := await connection.piece(None)) is not None:
        if b"\n" not in chunk:
            parts.append(chunk)
            size += len(chunk)
            if size > LINE_MAX:
                raise Broken("an event of the worker's is too large")
            continue
        head, *middle, tail = chunk.split(b"\n")
        lines = (b"".join([*parts, head]), *middle)
        batch = [_event(line) for line in lines if line.strip()]
        parts, size = [tail], len(tail)
        if batch:
            yield batch


def _event(line: bytes) -> dict[str, Any]:
    try:
        event = json.loads(line)
    except ValueError:
        raise Broken("the worker sent an event that is not JSON") from None
    return checked(event)


def checked(event: Any) -> dict[str, Any]:
    """A worker's event as parsed, once checked: Broken unless it has an int seq and one
    of the known types."""
    if not isinstance(event, dict) or type(event.get("seq")) is not int:
        raise Broken("the worker sent an event without a seq")
    if event.get("type") not in TYPES:  # the type is an SSE event name: never free text
        raise Broken("the worker sent an event of no known type")
    return event


def _object(data: bytes) -> dict[str, Any]:
    try:
        found = json.loads(data)
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
