"""``/api/v1/services``: services (create, list, read, scale, delete, events) and the proxy
to their replicas, ``/api/v1/services/{name}/proxy/{path}``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status
from fastapi.responses import StreamingResponse
from sse_starlette import EventSourceResponse, ServerSentEvent

from hpcgate.api.auth import Caller, GatewayDep
from hpcgate.api.problems import responses
from hpcgate.gateway import Gateway
from hpcgate.model.principal import Principal
from hpcgate.model.services import Service, ServiceCreate, ServicePatch

router = APIRouter(prefix="/api/v1/services", tags=["services"])

Name = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,39}$", description="The service's name")]
ProxyPath = Annotated[str, Path(description="The path on the replica (with the query as sent)")]
SSE = "text/event-stream"
PING_SECONDS = 15
PROXY_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Start a service of my own",
    responses=responses(400, 401, 403, 404, 409, 413, 422),
)
async def create_service(spec: ServiceCreate, who: Caller, gateway: GatewayDep) -> Service:
    """A service that runs as you and only you see; its replicas start as jobs on the
    system you name (none until a request comes when ``min_replicas`` is 0)."""
    return await gateway.services.create(who, spec)


@router.get("", summary="The services I may use", responses=responses(401, 403))
async def list_services(who: Caller, gateway: GatewayDep) -> list[Service]:
    """Those declared for you and your own, with their replicas."""
    return await gateway.services.list(who)


@router.get("/{name}", summary="One service", responses=responses(401, 403, 404, 422))
async def get_service(name: Name, who: Caller, gateway: GatewayDep) -> Service:
    return await gateway.services.get(who, name)


@router.patch(
    "/{name}",
    summary="Change a service's minimum and maximum replicas",
    responses=responses(401, 403, 404, 422),
)
async def scale_service(
    name: Name, patch: ServicePatch, who: Caller, gateway: GatewayDep
) -> Service:
    """Your own service, or (admin) a declared one, until the gateway restarts."""
    return await gateway.services.scale(who, name, patch)


@router.delete(
    "/{name}",
    status_code=status.HTTP_202_ACCEPTED,
    summary="Stop and remove my service",
    responses=responses(401, 403, 404, 409, 422),
)
async def delete_service(name: Name, who: Caller, gateway: GatewayDep) -> Service:
    """Its replicas drain (the running requests finish), their jobs are cancelled, then
    the service is gone. A declared service cannot be deleted (409)."""
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
    service)."""
    events = await gateway.services.events(who, name)  # 404 before any stream starts

    async def frames() -> AsyncIterator[ServerSentEvent]:
        async for event in events:
            yield ServerSentEvent(event.model_dump_json(), event=event.kind)

    return EventSourceResponse(frames(), ping=PING_SECONDS)


async def proxy(
    name: Name, path: ProxyPath, who: Caller, gateway: GatewayDep, request: Request
) -> Response:
    """Forward the request to the least busy ready replica, streaming both ways (the
    caller's Authorization is not passed on). With no ready replica the request waits
    while one starts, up to the configured bound, then 503 with Retry-After; a replica
    that fails gives 502, one that does not answer in time 504."""
    return await _forward(name, who, gateway, request)


async def proxy_root(name: Name, who: Caller, gateway: GatewayDep, request: Request) -> Response:
    """``.../proxy`` with nothing after it: the replica's ``/``."""
    return await _forward(name, who, gateway, request)


async def _forward(name: str, who: Principal, gateway: Gateway, request: Request) -> Response:
    route, spec = await gateway.services.route(who, name)
    answer = await gateway.services.proxy.forward(
        route,
        request.method,
        _target(request, name),
        request.headers.raw,
        request.stream(),
        float(spec.request_timeout),
    )
    response = StreamingResponse(answer.body, status_code=answer.status)
    response.raw_headers = [(key.lower(), value) for key, value in answer.headers]
    return response


def _target(request: Request, name: str) -> bytes:
    """The path and query the replica gets: what follows ``.../proxy``, as sent."""
    raw: bytes = request.scope.get("raw_path") or request.url.path.encode()
    prefix = f"{router.prefix}/{name}/proxy".encode()
    path = raw[len(prefix) :] if raw.startswith(prefix) else b""
    query: bytes = request.scope.get("query_string", b"")
    return (path or b"/") + (b"?" + query if query else b"")


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
