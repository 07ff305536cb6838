"""``GET /api/v1/agent/connect``: where outbound agents (``hpcgate-agent``) connect.

The agent token is checked before the upgrade: anything else is answered 401 (problem+json),
never upgraded. Then the agent's HELLO, our WELCOME, and the connection serves its system
(:class:`~hpcgate.transports.agent_hub.AgentLink`) until it ends, the agent breaks the
protocol (closed 1008, logged), or its token is revoked (checked twice a second against the
store, so a revoke by any gateway process or the CLI cuts it within a second, and fails
its requests at once). A new connection of the same agent (its id) ends its older one,
whose requests then ask the new one what became of them
(:meth:`~hpcgate.transports.agent_hub.AgentHub.call`).
"""

from __future__ import annotations

import contextlib
import logging

import anyio
from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect

from hpcgate.agentwire import codec
from hpcgate.agentwire import messages as m
from hpcgate.agentwire.frames import Frame, Kind, ProtocolError, control, decode, fields
from hpcgate.api.auth import noted
from hpcgate.api.problems import problem_of
from hpcgate.gateway import Gateway
from hpcgate.model.errors import HpcgateError, NotFound, Unauthenticated
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
    link = AgentLink(hello, grant.token_id, websocket.send_bytes, gateway.agents.channels)
    welcome = m.Welcome(gateway.agents.epoch)
    await link.send(control(Kind.WELCOME, 0, codec.encode(welcome, m.Welcome)))
    gateway.agents.add(grant.system, link)
    log.info("agent %s (%s) serves %s", hello.agent_id, hello.host, grant.system)
    try:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(_watch_token, gateway, websocket, grant, link, tasks.cancel_scope)
            tasks.start_soon(_watch_replaced, websocket, link, tasks.cancel_scope)
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
