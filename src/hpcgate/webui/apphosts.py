"""The app hosts: every request whose ``Host`` is under ``[ui] apps_domain`` (any method,
WebSockets too) goes to the service that host names, never to the gateway's API or pages;
every other request goes on to the gateway as before.

A request must carry the app host's cookie (set by ``/_hpcgate/enter`` from a one-time
ticket: :mod:`hpcgate.webui.apporigins`), naming a grant for this host whose session is
still signed in with a token that still authenticates as the grant's user. The cookie is
taken out before the replica sees the request. A state change and a WebSocket must come
from the app's own origin (``Origin``); the replica then sees its own (it checks the
origin against the ``Host`` it gets, its own). The replica's answer passes as it is, but
its cookies lose any ``Domain`` (an app sets cookies for its own host only) and none may
bear the app host's cookie's name.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from hpcgate.gateway import Gateway
from hpcgate.model.errors import (
    PROBLEM_BASE,
    Forbidden,
    HpcgateError,
    NotFound,
    Unauthenticated,
)
from hpcgate.relaying import proxied, serve_socket
from hpcgate.services.catalogue import spec_of
from hpcgate.services.proxy import Answer
from hpcgate.services.traffic import Route as ReplicaRoute
from hpcgate.webui.apporigins import (
    COOKIE,
    ENTER,
    GRANT_SECONDS,
    RESERVED,
    SECURE_COOKIE,
    Pass,
    Passes,
    cookie_name,
    host_label,
)
from hpcgate.webui.sessions import Sessions
from hpcgate.webui.viewer import session_principal

log = logging.getLogger(__name__)
METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
Headers = Sequence[tuple[bytes, bytes]]
#: The door's answer: its URL (with the spent ticket) goes nowhere, not even to the app.
ENTER_HEADERS = {"referrer-policy": "no-referrer", "cache-control": "no-store"}


class AppHosts:
    """ASGI middleware: a request for an app host to :func:`app_router`'s app, any other
    on to ``app``."""

    def __init__(self, app: ASGIApp, ui: FastAPI, domain: str) -> None:
        self.app = app
        self.domain = domain
        self.apps = app_router(AppDoor(ui.state.gateway, ui.state.sessions, ui.state.passes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            label = host_label(_host(scope), self.domain)
            if label is not None:
                await self.apps({**scope, "app_label": label}, receive, send)
                return
        await self.app(scope, receive, send)


def _host(scope: Scope) -> str:
    for name, value in scope.get("headers", []):
        if name == b"host":
            return str(value.decode("latin-1"))
    return ""


@dataclass(frozen=True)
class Entry:
    """A request let in: its grant, the replica it goes to and its time limit."""

    grant: Pass
    route: ReplicaRoute
    timeout: float


@dataclass(frozen=True)
class AppDoor:
    """What lets a request in to an app: the gateway, the signed-in sessions, the passes."""

    gateway: Gateway
    sessions: Sessions
    passes: Passes

    async def enter(self, request: Request) -> Response:
        """A ticket redeemed: the app host's cookie for its grant, and into the app."""
        label = _label(request)
        redeemed = self.passes.redeem(request.query_params.get("ticket", ""), label)
        if redeemed is None:
            raise Forbidden("this ticket is used, expired or for another app: open it again")
        secret, grant = redeemed
        if self.sessions.get(grant.session_id) is None:
            self.passes.end(secret)
            raise Unauthenticated("the session that opened this app has ended")
        answer = RedirectResponse(grant.start, status_code=303, headers=ENTER_HEADERS)
        secure = request.url.scheme == "https"
        answer.set_cookie(
            cookie_name(secure),
            secret,
            max_age=int(GRANT_SECONDS),
            path="/",
            httponly=True,
            samesite="lax",
            secure=secure,
        )
        return answer

    async def let_in(self, connection: HTTPConnection) -> Entry:
        """The request's grant and ready replica, or the reason it may not go in."""
        label = _label(connection)
        if not label or connection.url.path.startswith(RESERVED):
            raise NotFound("no such app")
        grant = self._grant(connection, label)
        session = self.sessions.get(grant.session_id)
        if session is None:
            raise Unauthenticated("signed out: open this app again from the gateway's pages")
        who = await session_principal(self.gateway, session)
        if who.user != grant.user or who.limited:
            raise Unauthenticated("open this app again from the gateway's pages")
        rows = await self.gateway.services.usable(who)
        # a grant names an owner's own service or a declared one, never a project's
        mine = (grant.owner, grant.name, "")
        row = next((r for r in rows if (r.owner, r.name, r.project) == mine), None)
        if row is None:
            raise NotFound(f"no service {grant.name!r}")
        route = await self.gateway.services.routed(row)
        return Entry(grant, route, float(spec_of(row.spec).request_timeout))

    def _grant(self, connection: HTTPConnection, label: str) -> Pass:
        name = cookie_name(connection.url.scheme in ("https", "wss"))
        for secret in _cookie_values(connection.headers.getlist("cookie"), name):
            grant = self.passes.grant(secret, label)
            if grant is not None:
                return grant
        raise Unauthenticated("open this app from the gateway's web interface")

    async def forward(self, request: Request) -> Response:
        origin = _origin(request)
        if request.method in UNSAFE and request.headers.get("origin", origin) != origin:
            raise Forbidden("this request came from another site")
        entry = await self.let_in(request)
        answer = await self.gateway.services.proxy.forward(
            entry.route,
            request.method,
            _target(request.scope),
            _to_replica(request.headers.raw, origin, entry.route),
            request.stream(),
            entry.timeout,
        )
        return proxied(answer, _from_replica(answer, origin, entry.route))

    async def socket(self, socket: WebSocket) -> None:
        async with contextlib.AsyncExitStack() as stack:
            try:
                origin = _origin(socket)
                if socket.headers.get("origin") != origin:
                    raise Forbidden("a WebSocket to an app must come from the app's own pages")
                entry = await self.let_in(socket)
                opening = self.gateway.services.proxy.socket(
                    entry.route,
                    _target(socket.scope),
                    _to_replica(socket.headers.raw, origin, entry.route),
                    entry.timeout,
                )
                opened = await stack.enter_async_context(opening)
            except HpcgateError as exc:
                await socket.send_denial_response(problem(exc))
                return
            await serve_socket(socket, opened, dropped=(b"set-cookie",))


def _label(connection: HTTPConnection) -> str:
    return str(connection.scope.get("app_label", ""))


def _origin(connection: HTTPConnection) -> str:
    """The app host's origin, as the browser names it."""
    scheme = {"ws": "http", "wss": "https"}.get(connection.url.scheme, connection.url.scheme)
    return f"{scheme}://{connection.headers.get('host', '').lower()}"


def _target(scope: Scope) -> bytes:
    """The path and query as they came: the replica serves at the app host's root (a
    service that keeps its prefix serves under it there too)."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope.get("query_string", b"")
    return raw + (b"?" + query if query else b"")


def _cookie_values(headers: Sequence[str], name: str) -> list[str]:
    values = []
    for header in headers:
        for pair in header.split(";"):
            key, _, value = pair.strip().partition("=")
            if key == name:
                values.append(value.strip())
    return values


OURS = frozenset({COOKIE.encode(), SECURE_COOKIE.encode()})


def _to_replica(headers: Headers, origin: str, route: ReplicaRoute) -> list[tuple[bytes, bytes]]:
    """The browser's headers as the replica gets them: with the replica's own origin for
    the app's (checked already); the proxy takes the gateway's cookies out, the app host's
    among them (:data:`hpcgate.services.proxy.GATEWAY_COOKIES`)."""
    own = b"http://" + route.host
    out: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        if name == b"origin":
            value = own
        elif name == b"referer":
            if not value.decode("latin-1").startswith(origin + "/"):
                continue
            value = own + value[len(origin) :]
        out.append((name, value))
    return out


def _from_replica(answer: Answer, origin: str, route: ReplicaRoute) -> list[tuple[bytes, bytes]]:
    """The replica's headers as the browser gets them: its cookies for its host only, a
    redirect to its own address made one to the app's."""
    own = "http://" + route.host.decode("latin-1")
    out: list[tuple[bytes, bytes]] = []
    for name, value in answer.headers:
        if name == b"set-cookie":
            cookie = _host_only(value)
            if cookie is None:
                continue
            value = cookie
        elif name == b"location":
            text = value.decode("latin-1")
            if text == own or text.startswith(own + "/"):
                value = (origin + text[len(own) :]).encode("latin-1")
        out.append((name, value))
    return out


def _host_only(cookie: bytes) -> bytes | None:
    """The cookie without a ``Domain`` attribute; None for one named as the app host's."""
    parts = [part.strip() for part in cookie.split(b";")]
    if not parts or parts[0].partition(b"=")[0].strip() in OURS:
        return None
    kept = [parts[0], *(p for p in parts[1:] if p.partition(b"=")[0].strip().lower() != b"domain")]
    return b"; ".join(kept)


def problem(exc: HpcgateError) -> JSONResponse:
    headers = dict(exc.headers)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(exc.retry_after))
    return _document(exc.status, exc.slug, exc.title, exc.detail, headers)


def _document(
    status: int, slug: str, title: str, detail: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    return JSONResponse(body, status, headers, media_type="application/problem+json")


async def _problem(request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPException):  # the router's own: a method no route takes
        return _document(exc.status_code, "http", "Not answered here", str(exc.detail))
    assert isinstance(exc, HpcgateError)
    return problem(exc)


def app_router(door: AppDoor) -> Starlette:
    """The app hosts' application: the ticket's door, then every path to the app."""
    routes = [
        Route(ENTER, door.enter, methods=["GET"]),
        Route("/{path:path}", door.forward, methods=METHODS),
        WebSocketRoute("/{path:path}", door.socket),
    ]
    return Starlette(
        routes=routes,
        exception_handlers={HpcgateError: _problem, HTTPException: _problem},
    )
