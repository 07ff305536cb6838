"""``GET /api/v1/agent/connect``: where outbound agents (``hpcgate-agent``) connect.

The agent token is checked before the upgrade: anything else is answered 401 (problem+json),
never upgraded. Then the agent's HELLO, our WELCOME, and the connection serves its system
(:class:`~hpcgate.transports.agent_hub.AgentLink`) until it ends, the agent breaks the
protocol (closed 1008, logged), or its token is revoked (checked twice a second against the
store, so a revoke by any gateway process or the CLI cuts it within a second, and fails
its requests at once). A new connection of the same agent (its id) ends its older one,
whose requests then ask the new one what became of them
(:meth:`~hpcgate.transports.agent_hub.AgentHub.call`).

``POST /api/v1/agent/streams/{id}``: an agent's data connection, the bytes of one bulk read
as its request body (:mod:`hpcgate.transports.agent_bulk`), checked by the same agent
token.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Annotated

import anyio
from fastapi import APIRouter, Path, Request, Response, WebSocket, status
from starlette.requests import ClientDisconnect
from starlette.websockets import WebSocketDisconnect

from hpcgate.agentwire import codec
from hpcgate.agentwire import messages as m
from hpcgate.agentwire.frames import Frame, Kind, ProtocolError, control, decode, fields
from hpcgate.api.auth import noted
from hpcgate.api.problems import problem_of, responses
from hpcgate.gateway import Gateway
from hpcgate.model.errors import Conflict, HpcgateError, NotFound, Unauthenticated
from hpcgate.model.principal import Principal, Scope
from hpcgate.tokens import AGENT_USER, AgentGrant
from hpcgate.transports.agent_hub import AgentLink

router = APIRouter(tags=["agents"])
log = logging.getLogger(__name__)
REVOCATION_CHECK = 0.5  # seconds


class _Broken(Exception):
    """The agent broke the protocol; the connection closes with 1008."""


@router.websocket("/api/v1/agent/connect")
async def connect(websocket: WebSocket) -> None:
    gateway: Gateway = websocket.app.state.gateway
    try:
        grant = await _grant(gateway, websocket.headers.get("authorization", ""))
    except HpcgateError as exc:
        await websocket.send_denial_response(problem_of(exc))
        return
    agent = Principal(AGENT_USER, frozenset({Scope.AGENT_SERVE}), grant.token_id)
    noted(websocket.scope, agent)
    await websocket.accept()
    try:
        await _serve(gateway, websocket, grant)
    except (_Broken, ProtocolError) as exc:
        await _close(websocket, grant, str(exc))
    except WebSocketDisconnect:
        pass


StreamId = Annotated[
    str, Path(pattern=f"^{m.STREAM_ID.pattern}$", description="From the agent's request")
]


@router.post(
    "/api/v1/agent/streams/{stream}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="An agent's data connection: the bytes of one bulk read (agents only)",
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}}},
    responses=responses(401, 404, 409, 422),
)
async def bulk_stream(request: Request, stream: StreamId) -> Response:
    """Where an agent sends the bytes of a download the gateway asked of it on its
    WebSocket (``handle_read_bulk``), as one request body, instead of as WebSocket
    messages. ``stream`` is single-use and valid only with the agent token of the
    connection it was sent on (anything else: 404); the body is read only as fast as the
    download takes it. 409: the download ended (its client left, or the read was cut)
    before the body did."""
    gateway: Gateway = request.app.state.gateway
    grant = await _grant(gateway, request.headers.get("authorization", ""))
    noted(request.scope, Principal(AGENT_USER, frozenset({Scope.AGENT_SERVE}), grant.token_id))
    pipe = gateway.agents.bulk.claim(stream, grant.token_id)
    if pipe is None:
        raise NotFound("no such stream: unknown, used, ended, or another agent's")
    try:
        with pipe.feeding():
            async for chunk in request.stream():
                await pipe.put(chunk)
            pipe.finish()
    except ClientDisconnect:
        pipe.abort("the agent's data connection broke")
    except anyio.BrokenResourceError:
        pass
    if pipe.error is not None:
        raise Conflict(f"the read ended before its data did: {pipe.error}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


async def _close(websocket: WebSocket, grant: AgentGrant, reason: str) -> None:
    log.warning("an agent of %s broke the protocol: %s", grant.system, reason)
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close(1008, reason[:120])


async def _grant(gateway: Gateway, authorization: str) -> AgentGrant:
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthenticated("send 'Authorization: Bearer <agent token>'")
    grant = await gateway.tokens.authenticate_agent(token.strip())
    if gateway.systems.get(grant.system).config.transport != "agent":
        raise NotFound(f"system {grant.system!r} is not served by agents here")
    return grant


async def _frame(websocket: WebSocket) -> Frame:
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    data = message.get("bytes")
    if data is None:
        raise _Broken("a text message")
    return decode(data)


async def _serve(gateway: Gateway, websocket: WebSocket, grant: AgentGrant) -> None:
    hello_frame = await _frame(websocket)
    if hello_frame.kind is not Kind.HELLO:
        raise _Broken("the first frame is no HELLO")
    hello: m.Hello = codec.decode(fields(hello_frame), m.Hello, "hello")
    if grant.user is not None and hello.user != grant.user:
        # a token given for one user's agent: an agent that says it is root, or another
        # user's, would be sent every user's (or that user's) work
        raise _Broken(f"this agent token is for {grant.user!r}'s agent only")
    features = websocket.headers.get(m.FEATURES_HEADER, "")
    takes_bulk = m.BULK in (word.strip() for word in features[:200].split(","))
    bulk = gateway.agents.bulk if takes_bulk else None
    link = AgentLink(hello, grant.token_id, websocket.send_bytes, gateway.agents.channels, bulk)
    welcome = m.Welcome(gateway.agents.epoch)
    await link.send(control(Kind.WELCOME, 0, codec.encode(welcome, m.Welcome)))
    gateway.agents.add(grant.system, link)
    log.info("agent %s (%s) serves %s", hello.agent_id, hello.host, grant.system)
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_watch_token, gateway, websocket, grant, link, tasks.cancel_scope)
            tasks.start_soon(_watch_replaced, websocket, link, tasks.cancel_scope)
            tasks.start_soon(gateway.agents.send_discards, grant.system, link)
            broken = await _read(websocket, link)
            tasks.cancel_scope.cancel()
        if broken is not None:
            await _close(websocket, grant, broken)
    finally:
        gateway.agents.remove(grant.system, link)
        link.broken("the agent's connection ended")
        log.info("agent %s left %s", hello.agent_id, grant.system)


async def _read(websocket: WebSocket, link: AgentLink) -> str | None:
    """Hand the agent's frames to its link until it leaves (None) or breaks the protocol
    (why)."""
    try:
        while True:
            await link.deliver(await _frame(websocket))
    except (_Broken, ProtocolError) as exc:
        return str(exc)
    except WebSocketDisconnect:
        return None


async def _watch_replaced(websocket: WebSocket, link: AgentLink, scope: anyio.CancelScope) -> None:
    """The same agent connected again (so it left this connection, whatever TCP says):
    this one ends, and its requests wait for the new one."""
    await link.replaced.wait()
    scope.cancel()
    with anyio.CancelScope(shield=True), contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close(1000, "replaced by the agent's new connection")


async def _watch_token(
    gateway: Gateway,
    websocket: WebSocket,
    grant: AgentGrant,
    link: AgentLink,
    scope: anyio.CancelScope,
) -> None:
    # A poll: a revoke by another process (the CLI) sends this one no event.
    while await gateway.tokens.agent_token_live(grant.token_id):  # noqa: ASYNC110
        await anyio.sleep(REVOCATION_CHECK)
    log.warning("agent token %s was revoked: closing its connection", grant.token_id)
    link.broken("its agent token was revoked", final=True)
    scope.cancel()
    with anyio.CancelScope(shield=True), contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close(1008, "token revoked")
