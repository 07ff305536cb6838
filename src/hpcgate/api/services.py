"""``/api/v1/services``: services (create, list, read, scale, delete, events) and the proxy
to their replicas, ``/api/v1/services/{name}/proxy/{path}``."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import (
    APIRouter,
    Path,
    Query,
    Request,
    Response,
    WebSocket,
    status,
)
from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Scope

from hpcgate.api.auth import Caller, GatewayDep, noted, within_limits
from hpcgate.api.problems import problem_of, responses
from hpcgate.gateway import Gateway
from hpcgate.model.errors import HpcgateError, NotFound, Unauthenticated
from hpcgate.model.principal import Principal
from hpcgate.model.projects import PROJECT_NAME_PATTERN
from hpcgate.model.services import QUALIFIED_PATTERN, Service, ServiceCreate, ServicePatch
from hpcgate.relaying import proxied, serve_socket
from hpcgate.services.replicas import public_prefix

router = APIRouter(prefix="/api/v1/services", tags=["services"])

Name = Annotated[
    str,
    Path(
        pattern=QUALIFIED_PATTERN,
        description="The service's name: NAME for your own or a declared one, PROJECT~NAME"
        " for a project's",
    ),
]
ProxyPath = Annotated[str, Path(description="The path on the replica (with the query as sent)")]
SERVICE_NAME = re.compile(QUALIFIED_PATTERN.removeprefix("^").removesuffix("$"))
SSE = "text/event-stream"
PING_SECONDS = 15
PROXY_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Start a service of my own or of a project's",
    responses=responses(400, 401, 403, 404, 409, 413, 422),
)
async def create_service(spec: ServiceCreate, who: Caller, gateway: GatewayDep) -> Service:
    """A service that runs as you and only you see; its replicas start as jobs on the
    system you name (none until a request comes when ``min_replicas`` is 0). With
    ``project`` (your role there: member or owner; a viewer gets 403, a non-member 404) it
    still runs as you, and the project's members address it as ``PROJECT~NAME``: a name is
    unique in the project (409), apart from your own services' names. Past one of
    the admin's per-user limits (services, replicas per service and in all, a replica's
    time limit) it is a 403 `limit-exceeded` problem (with `limit` and `requested`) that
    creates nothing."""
    return await gateway.services.create(who, spec)


@router.get("", summary="The services I may use", responses=responses(401, 403, 404, 422))
async def list_services(
    who: Caller,
    gateway: GatewayDep,
    everyone: Annotated[
        bool,
        Query(
            alias="all",
            description="Every user's services and the declared ones (admin scope; 403 otherwise)",
        ),
    ] = False,
    project: Annotated[
        str | None,
        Query(
            pattern=PROJECT_NAME_PATTERN,
            description="That project's services instead (any role; 404 without one)",
        ),
    ] = None,
) -> list[Service]:
    """Those declared for you and your own, with their replicas (no project's: ask for
    them with ``project``); with ``all=true`` (an admin, its token limited to nothing)
    every user's and every project's: each names its ``owner`` and ``project``."""
    if everyone:
        return await gateway.services.every(who)
    return await gateway.services.list(who, project)


@router.get("/{name}", summary="One service", responses=responses(401, 403, 404, 422))
async def get_service(name: Name, who: Caller, gateway: GatewayDep) -> Service:
    """A project's service (``PROJECT~NAME``) to any role in the project; 404 to others."""
    return await gateway.services.get(who, name)


@router.patch(
    "/{name}",
    summary="Change a service's minimum and maximum replicas",
    responses=responses(401, 403, 404, 422),
)
async def scale_service(
    name: Name, patch: ServicePatch, who: Caller, gateway: GatewayDep
) -> Service:
    """Your own service, a project's (member or owner), or (admin) a declared one, until
    the gateway restarts. Raising
    your service's `max_replicas` past a per-user limit is a 403 `limit-exceeded` problem
    that changes nothing; lowering is always allowed."""
    return await gateway.services.scale(who, name, patch)


@router.delete(
    "/{name}",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Stop and remove my service",
    responses=responses(401, 403, 404, 409, 422),
)
async def delete_service(name: Name, who: Caller, gateway: GatewayDep) -> Service:
    """Its replicas drain (the running requests finish), their jobs are cancelled, then
    the service is gone. A declared service cannot be deleted (409). A project's: by an
    owner of the project or the member who created it (403 for other members)."""
    return await gateway.services.delete(who, name)


@router.get(
    "/{name}/events",
    summary="The service's events as Server-Sent Events",
    response_class=EventSourceResponse,
    responses={
        200: {"content": {SSE: {}}, "description": "'state' and 'stderr' events (ServiceEvent)"},
        **responses(401, 403, 404, 422),
    },
)
async def service_events(name: Name, who: Caller, gateway: GatewayDep) -> EventSourceResponse:
    """Its replicas' changes of state from now on: to its owner (an admin for a declared
    service; a project's members and owners for a project's)."""
    events = await gateway.services.events(who, name)  # 404 before any stream starts

    async def frames() -> AsyncIterator[ServerSentEvent]:
        async for event in events:
            yield ServerSentEvent(event.model_dump_json(), event=event.kind)

    return EventSourceResponse(frames(), ping=PING_SECONDS)


# hpcgate.api.forwarding answers these requests in front of the router, as these routes
# would; the routes document them (OpenAPI) and serve only what it passes on.
async def proxy(
    name: Name, path: ProxyPath, who: Caller, gateway: GatewayDep, request: Request
) -> Response:
    """Forward the request to the least busy ready replica, streaming both ways (the
    caller's Authorization is not passed on). A project's service (``PROJECT~NAME``)
    serves its members and owners; a viewer gets 403, anyone else 404. With no ready
    replica the request waits while one starts, up to the configured bound, then 503 with
    Retry-After; a replica that fails gives 502, one that does not answer in time 504. The
    path the replica gets is what follows `.../proxy`, or the whole path for a service
    with `keep_prefix`.

    **WebSocket**: a GET with `Upgrade: websocket` on the same path opens a WebSocket to
    the replica (OpenAPI cannot describe one, so it is only told here). It authenticates
    like any request (`Authorization: Bearer`), waits for a ready replica the same way,
    and relays text and binary messages and the close code and reason both ways; pings are
    answered on each hop. A refusal before the socket opens is an HTTP answer: a problem
    document (a credential held for consent: a 403, not the 202 a request gets), or the
    replica's own answer when it does not switch protocols."""
    return await _forward(name, who, gateway, request)


async def proxy_root(name: Name, who: Caller, gateway: GatewayDep, request: Request) -> Response:
    """``.../proxy`` with nothing after it: the replica's ``/``."""
    return await _forward(name, who, gateway, request)


async def _forward(name: str, who: Principal, gateway: Gateway, request: Request) -> Response:
    route, spec = await gateway.services.route(who, name)
    answer = await gateway.services.proxy.forward(
        route,
        request.method,
        replica_target(request.scope, name, keep_prefix=spec.keep_prefix),
        request.headers.raw,
        request.stream(),
        float(spec.request_timeout),
    )
    return proxied(answer)


def replica_target(scope: Scope, name: str, *, keep_prefix: bool) -> bytes:
    """The path and query the replica gets, as sent: what follows ``.../proxy``, or the
    whole path for a service that keeps the prefix (it serves under it)."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    prefix = public_prefix(name).rstrip("/").encode()
    path = raw[len(prefix) :] if raw.startswith(prefix) else b""
    if keep_prefix:
        path = prefix + path
    query: bytes = scope.get("query_string", b"")
    return (path or b"/") + (b"?" + query if query else b"")


async def proxy_socket(socket: WebSocket, name: str) -> None:
    """A WebSocket to the service's least busy ready replica (see :func:`proxy`)."""
    gateway: Gateway = socket.app.state.gateway
    async with contextlib.AsyncExitStack() as stack:
        try:
            who = await _socket_caller(socket, gateway, name)
            route, spec = await gateway.services.route(who, name)
            target = replica_target(socket.scope, name, keep_prefix=spec.keep_prefix)
            opening = gateway.services.proxy.socket(
                route, target, socket.headers.raw, float(spec.request_timeout)
            )
            opened = await stack.enter_async_context(opening)
        except HpcgateError as exc:
            await socket.send_denial_response(problem_of(exc, socket=True))
            return
        await serve_socket(socket, opened)


async def _socket_caller(socket: WebSocket, gateway: Gateway, name: str) -> Principal:
    """Who opens the WebSocket: the bearer token of its ``Authorization`` header.

    The hook for browsers, which cannot set that header on a WebSocket: the web UI will
    authenticate them here by its session cookie, and then must also check that
    ``Origin`` is the gateway's own (a cookie goes along with a WebSocket any site opens),
    and the proxy must drop that cookie as it drops ``Authorization``. Until then only the
    header counts: a cookie or a ``?token=`` is not a credential."""
    if SERVICE_NAME.fullmatch(name) is None:
        raise NotFound(f"no service {name!r}")
    scheme, _, token = socket.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("send 'Authorization: Bearer <token>'")
    who = noted(socket.scope, await gateway.authenticate(token.strip()))
    within_limits(socket.scope, who)
    return who


_PROXY_RESPONSES = {
    200: {"description": "The replica's answer, as it sent it (any status)"},
    **responses(401, 403, 404, 413, 422, 502, 503, 504),
}
for _method in PROXY_METHODS:
    router.add_api_route(
        "/{name}/proxy/{path:path}",
        proxy,
        methods=[_method],
        name="proxy",
        summary="Send a request to the service",
        response_class=StreamingResponse,
        responses=_PROXY_RESPONSES,
    )
    router.add_api_route(
        "/{name}/proxy",
        proxy_root,
        methods=[_method],
        name="proxy_root",
        include_in_schema=False,
    )
router.add_api_websocket_route("/{name}/proxy/{path:path}", proxy_socket, name="proxy_socket")
router.add_api_websocket_route("/{name}/proxy", proxy_socket, name="proxy_socket_root")
