"""The agent's byte streams (``connect``): a TCP connection to a node the policy allows
(:mod:`.targets`), its bytes as DATA frames of the request's channel both ways, with
credit (:mod:`hpcgate.agentwire.pipe`). Large reads and writes of an open file
(``handle_read_data``, ``handle_write_data``) move their bytes the same way; a bulk read
(``handle_read_bulk``) moves them on a data connection of its own (:mod:`.bulk`).

The first CREDIT tells the gateway that the connection is open; a CLOSE from either end is
passed on as a half-close (the node's end of file, or ``shutdown`` of our sending side);
a broken connection is a CLOSE with an error. The request's RESULT comes once both
directions have ended; a CANCEL from the gateway closes the connection at once.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from typing import Any

import anyio
from anyio.abc import SocketStream, TaskGroup

from hpcgate.agent.bulk import BulkSender
from hpcgate.agent.policy import Policy, Refused
from hpcgate.agent.targets import StreamTargets
from hpcgate.agentwire import messages as m
from hpcgate.agentwire.credit import INITIAL_WINDOW
from hpcgate.agentwire.frames import Frame
from hpcgate.agentwire.pipe import Pipe, Send, credit
from hpcgate.model.errors import TransportError
from hpcgate.transports import tcp
from hpcgate.transports.filesystem import OpenFile

CONNECT_TIMEOUT = 10.0
READ_BYTES = 64 * 1024
FILE_PIECE = 1024 * 1024  # one read of a file for handle_read_data
BROKEN = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)
log = logging.getLogger("hpcgate.agent")


class Streams:
    """The open streams of one connection to the gateway."""

    def __init__(
        self,
        policy: Policy,
        targets: StreamTargets,
        send: Send,
        open_file: Callable[[int], OpenFile],
        bulk: BulkSender | None = None,
    ) -> None:
        self._policy = policy
        self._bulk = bulk  # None: bulk reads are not taken (nor offered in the handshake)
        self._targets = targets
        self._send = send
        self._open_file = open_file
        self._pipes: dict[int, Pipe] = {}

    def deliver(self, frame: Frame) -> None:
        """A DATA, CREDIT or CLOSE frame; one of a channel that has no stream (any more) is
        dropped (it crossed the stream's end)."""
        pipe = self._pipes.get(frame.channel)
        if pipe is not None:
            pipe.deliver(frame)

    async def serve(self, channel: int, request: m.Request[Any], account: str | None) -> Any:
        """Serve one request of :data:`~hpcgate.agentwire.messages.STREAMED`; its value."""
        self._policy.account(account)  # a user's agent carries only its user's streams
        if isinstance(request, m.HandleReadData):
            return await self._read_out(channel, request)
        if isinstance(request, m.HandleWriteData):
            return await self._write_in(channel, request)
        if isinstance(request, m.Connect):
            return await self._connect(channel, request)
        if isinstance(request, m.HandleReadBulk):
            return await self._read_bulk(request)
        raise Refused(f"operation {request.op!r} is not a stream")

    async def _read_out(self, channel: int, request: m.HandleReadData) -> int:
        """The file's bytes from ``offset`` as DATA, as the gateway grants; their count."""
        opened = self._open_file(request.handle)
        size, offset = min(max(request.size, 0), m.MAX_DATA_IO), max(request.offset, 0)
        sent = 0
        with self._pipe(channel) as pipe:
            while sent < size:
                chunk = await opened.read(offset + sent, min(FILE_PIECE, size - sent))
                if not chunk:
                    break
                await pipe.send(chunk)
                sent += len(chunk)
            await pipe.send_eof()
        return sent

    async def _read_bulk(self, request: m.HandleReadBulk) -> int:
        """The file's bytes from ``offset`` on a data connection to the gateway
        (:mod:`.bulk`); their count."""
        if self._bulk is None:
            raise Refused("this agent takes no bulk reads")
        opened = self._open_file(request.handle)
        size, offset = min(max(request.size, 0), m.MAX_BULK_IO), max(request.offset, 0)
        return await self._bulk.send(request.stream, opened, offset, size)

    async def _write_in(self, channel: int, request: m.HandleWriteData) -> int:
        """The gateway's DATA written to the file until its CLOSE; their count."""
        opened = self._open_file(request.handle)
        written = 0
        with self._pipe(channel) as pipe:
            await self._send(credit(channel, INITIAL_WINDOW))
            while True:
                try:
                    data = await pipe.receive(READ_BYTES)
                except anyio.EndOfStream:
                    break
                written += len(data)
                if written > m.MAX_DATA_IO:
                    raise Refused(f"more than {m.MAX_DATA_IO} bytes in one handle_write_data")
                await opened.write(data)
            await pipe.send_eof()
        return written

    @contextlib.contextmanager
    def _pipe(self, channel: int) -> Iterator[Pipe]:
        pipe = self._pipes[channel] = Pipe(channel, self._send)
        try:
            yield pipe
        finally:
            del self._pipes[channel]
            pipe.abort("the stream ended")

    async def _connect(self, channel: int, request: m.Connect) -> None:
        """Connect, then carry the stream until both directions end."""
        await self._targets.check(request.host, request.port)
        node = await _connected(request.host, request.port)
        with self._pipe(channel) as pipe:
            async with node:
                await self._send(credit(channel, INITIAL_WINDOW))
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(_to_gateway, node, pipe, tasks)
                    tasks.start_soon(_to_node, pipe, node, tasks)


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
