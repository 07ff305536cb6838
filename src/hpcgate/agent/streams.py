"""The agent's byte streams (``connect``): a TCP connection to a node the policy allows
(:mod:`.targets`), its bytes as DATA frames of the request's channel both ways, with
credit (:mod:`hpcgate.agentwire.pipe`).

The first CREDIT tells the gateway that the connection is open; a CLOSE from either end is
passed on as a half-close (the node's end of file, or ``shutdown`` of our sending side);
a broken connection is a CLOSE with an error. The request's RESULT comes once both
directions have ended; a CANCEL from the gateway closes the connection at once.
"""

from __future__ import annotations

import contextlib
import logging

import anyio
from anyio.abc import SocketStream, TaskGroup

from hpcgate.agent.policy import Policy
from hpcgate.agent.targets import StreamTargets
from hpcgate.agentwire import messages as m
from hpcgate.agentwire.credit import INITIAL_WINDOW
from hpcgate.agentwire.frames import Frame, Kind, control
from hpcgate.agentwire.pipe import Pipe, Send
from hpcgate.model.errors import TransportError
from hpcgate.transports import tcp

CONNECT_TIMEOUT = 10.0
READ_BYTES = 64 * 1024
BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
log = logging.getLogger("hpcgate.agent")


class Streams:
    """The open streams of one connection to the gateway."""

    def __init__(self, policy: Policy, targets: StreamTargets, send: Send) -> None:
        self._policy = policy
        self._targets = targets
        self._send = send
        self._pipes: dict[int, Pipe] = {}

    def deliver(self, frame: Frame) -> None:
        """A DATA, CREDIT or CLOSE frame; one of a channel that has no stream (any more) is
        dropped (it crossed the stream's end)."""
        pipe = self._pipes.get(frame.channel)
        if pipe is not None:
            pipe.deliver(frame)

    async def serve(self, channel: int, request: m.Connect, account: str | None) -> None:
        """Connect, then carry the stream until both directions end."""
        self._policy.account(account)  # a user's agent carries only its user's streams
        await self._targets.check(request.host, request.port)
        node = await _connected(request.host, request.port)
        pipe = self._pipes[channel] = Pipe(channel, self._send)
        try:
            async with node:
                await self._send(control(Kind.CREDIT, channel, {"bytes": INITIAL_WINDOW}))
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(_to_gateway, node, pipe, tasks)
                    tasks.start_soon(_to_node, pipe, node, tasks)
        finally:
            del self._pipes[channel]
            pipe.abort("the stream ended")


async def _connected(host: str, port: int) -> SocketStream:
    try:
        with anyio.fail_after(CONNECT_TIMEOUT):
            return await tcp.connect(host, port)
    except (OSError, TimeoutError) as exc:
        raise TransportError(f"the agent could not connect to {host}:{port}: {exc}") from None


async def _to_gateway(node: SocketStream, pipe: Pipe, tasks: TaskGroup) -> None:
    try:
        while True:
            try:
                data = await node.receive(READ_BYTES)
            except anyio.EndOfStream:
                break
            await pipe.send(data)
        await pipe.send_eof()
    except BROKEN as exc:
        await _broke(pipe, tasks, f"the node's connection broke: {exc or type(exc).__name__}")


async def _to_node(pipe: Pipe, node: SocketStream, tasks: TaskGroup) -> None:
    try:
        while True:
            try:
                data = await pipe.receive(READ_BYTES)
            except anyio.EndOfStream:
                break
            await node.send(data)
        await node.send_eof()
    except BROKEN as exc:
        await _broke(pipe, tasks, f"the stream broke: {exc or type(exc).__name__}")


async def _broke(pipe: Pipe, tasks: TaskGroup, reason: str) -> None:
    tasks.cancel_scope.cancel()
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        await pipe.fail(reason)
