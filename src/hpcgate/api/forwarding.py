"""The forwarding routes, answered in front of FastAPI's router: any request to a service's
proxy (``/api/v1/services/{name}/proxy/{path}``) and a POST to ``/v1``'s chat completions,
completions and embeddings.

They are the gateway's hot path, and all they take from the request is the bearer token,
the path and the body. Matching them against every route, solving their dependencies and
Starlette's streaming answer cost more than the proxy's own work (bench/RESULTS.md), so
this layer serves them itself, as the routes would: the same token check and domain calls,
the same answers and errors. The routes stay in the router, which documents them in
OpenAPI and serves what this layer passes on: a name the pattern refuses (422), a method
the proxy does not take (405), WebSockets, an app mounted under a ``root_path``.

It sits inside :class:`~hpcgate.api.limits.BodyLimit`, so bodies are bounded as before,
and inside Starlette's error middleware, so an unexpected error is still a logged 500.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, Awaitable

from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Receive, Scope, Send

from hpcgate.api.auth import admit, noted, openai_limits, within_limits
from hpcgate.api.problems import problem_of
from hpcgate.api.services import PROXY_METHODS, SERVICE_NAME, replica_target
from hpcgate.gateway import Gateway
from hpcgate.model.errors import HpcgateError, Unauthenticated
from hpcgate.model.principal import Principal
from hpcgate.services.openai import ENDPOINTS, read_call
from hpcgate.services.proxy import Answer, BrokenAnswer

# As the router's "/{name}/proxy/{path:path}" and "/{name}/proxy" with the name's pattern;
# '.' takes no newline there either, so a path the router would not match falls through.
PROXY_PATH = re.compile(rf"/api/v1/services/({SERVICE_NAME.pattern})/proxy(?:/.*)?")
SERVICES_PREFIX = "/api/v1/services/"
OPENAI_PATHS = {f"/v1/{endpoint}": endpoint for endpoint in ENDPOINTS}
_METHODS = frozenset(PROXY_METHODS)


def bearer_token(scope: Scope) -> str | None:
    """The token of the request's first ``Authorization`` header, read as FastAPI's
    ``HTTPBearer`` reads it: scheme ``Bearer`` (any case), the rest stripped."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            token = token.strip()
            return token if token and scheme.lower() == "bearer" else None
    return None


class Forwarding:
    """ASGI middleware: the forwarding routes here, every other request to ``app``."""

    def __init__(self, app: ASGIApp, gateway: Gateway) -> None:
        self.app = app
        self._gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            path: str = scope["path"]
            if path.startswith(SERVICES_PREFIX) and scope["method"] in _METHODS:
                if found := PROXY_PATH.fullmatch(path):
                    await self._proxy(found[1], scope, receive, send)
                    return
            elif scope["method"] == "POST" and (endpoint := OPENAI_PATHS.get(path)):
                await self._openai(endpoint, scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _caller(self, scope: Scope) -> Principal:
        token = bearer_token(scope)
        if token is None:
            raise Unauthenticated("send 'Authorization: Bearer <token>'")
        who = noted(scope, await self._gateway.authenticate(token))
        within_limits(scope, who)
        admit(scope, self._gateway, who)
        return who

    async def _proxy(self, name: str, scope: Scope, receive: Receive, send: Send) -> None:
        """As :func:`hpcgate.api.services.proxy` (the route that documents it)."""
        services = self._gateway.services
        try:
            route, spec = await services.route(await self._caller(scope), name)
            body = await arrived_body(receive)
        except HpcgateError as exc:
            await problem_of(exc)(scope, receive, send)
            return
        target = replica_target(scope, name, keep_prefix=spec.keep_prefix)
        timeout = float(spec.request_timeout)
        asked = services.proxy.forward(
            route, scope["method"], target, scope["headers"], body, timeout
        )
        if isinstance(body, bytes):  # all read: the caller's leaving can be watched now
            await answered(asked, scope, receive, send)
            return
        try:
            answer = await asked  # the body still arriving: a caller that leaves ends it
        except HpcgateError as exc:
            await problem_of(exc)(scope, receive, send)
            return
        await respond(answer, receive, send)

    async def _openai(self, endpoint: str, scope: Scope, receive: Receive, send: Send) -> None:
        """As :func:`hpcgate.api.openai.chat_completions` and its siblings."""
        try:
            who = await self._caller(scope)
            call = read_call(await whole_body(receive))  # bounded by BodyLimit
            await openai_limits(scope, self._gateway, who, call)
        except HpcgateError as exc:
            await problem_of(exc, openai=True)(scope, receive, send)
            return
        asked = self._gateway.openai.call(who, endpoint, call, scope["headers"])
        await answered(asked, scope, receive, send, openai=True)


async def request_body(receive: Receive) -> AsyncGenerator[bytes, None]:
    """The request's body as it arrives (ClientDisconnect if the caller leaves first)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        if body := message.get("body"):
            yield body
        if not message.get("more_body"):
            return


async def arrived_body(receive: Receive) -> bytes | AsyncGenerator[bytes, None]:
    """The request's body: whole when it came in one message (a GET's, most small POSTs':
    the proxy can then send it again on a new connection), else as it arrives."""
    message = await receive()
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    first: bytes = message.get("body", b"")
    return _after(first, receive) if message.get("more_body") else first


async def _after(first: bytes, receive: Receive) -> AsyncGenerator[bytes, None]:
    if first:
        yield first
    async for chunk in request_body(receive):
        yield chunk


async def whole_body(receive: Receive) -> bytes:
    return b"".join([chunk async for chunk in request_body(receive)])


class _CallerGone(Exception):
    """The caller disconnected before its answer was all sent."""


async def answered(
    asked: Awaitable[Answer], scope: Scope, receive: Receive, send: Send, openai: bool = False
) -> None:
    """Wait for the answer to a request whose body is all read, then send it, as
    :func:`respond` does; a caller that leaves meanwhile, before the replica's answer or
    before its first chunk, cancels the wait (the proxy then discards the connection and
    the request stops counting in flight) or closes the answer (:meth:`Answer.aclose`:
    the same, and its usage counted), at once rather than when the replica answers.
    One watcher for the whole request, created before the request leaves."""
    try:
        async with asyncio.TaskGroup() as group:
            watcher = group.create_task(_raise_when_gone(receive))
            try:
                answer = await asked
            except HpcgateError as exc:
                watcher.cancel()
                await problem_of(exc, openai=openai)(scope, receive, send)
                return
            await _relayed(answer, send, watcher)
    except* _CallerGone:
        pass  # nobody to answer any more
    except* BrokenAnswer:
        pass  # left unfinished: the server closes the connection, the caller sees a cut


async def _relayed(answer: Answer, send: Send, watcher: asyncio.Task[None]) -> None:
    """Send the answer, its body chunk by chunk as it comes; ended whatever happens."""
    try:
        await send(
            {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
        )
        async for chunk in answer.body:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})
        watcher.cancel()
    finally:
        await answer.aclose()


async def respond(answer: Answer, receive: Receive, send: Send) -> None:
    """Send the answer, its body chunk by chunk as the replica sends it, until it ends, the
    caller leaves or the replica breaks it off (then it is left unfinished, as
    :class:`~hpcgate.relaying.ProxiedResponse` leaves it); the body is closed whatever
    happens (which ends its count in flight).

    An asyncio task group, not anyio's (as Starlette's streaming answer has): on asyncio
    it costs a quarter as much, per request."""
    start = {"type": "http.response.start", "status": answer.status, "headers": answer.headers}
    try:
        await send(start)
        async with asyncio.TaskGroup() as group:
            watcher = group.create_task(_raise_when_gone(receive))
            async for chunk in answer.body:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            watcher.cancel()
    except* _CallerGone:
        pass  # nobody to answer any more
    except* BrokenAnswer:
        pass  # left unfinished: the server closes the connection, the caller sees a cut
    finally:
        await answer.aclose()


async def _raise_when_gone(receive: Receive) -> None:
    """Wait for the caller's disconnect (its body has been read by then)."""
    while (await receive())["type"] != "http.disconnect":
        pass
    raise _CallerGone()
