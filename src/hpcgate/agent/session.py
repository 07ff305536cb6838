"""One connection of the agent to the gateway: hello, then each REQUEST served as a task of
its own (a slow copy never holds up a status query), its stderr lines as LINE frames, its
outcome as one RESULT.

A request whose result is kept (:mod:`hpcgate.agent.keeper`) runs in the agent's own task
group, not the connection's: a break does not stop it, its result waits for the gateway's
ACK, and the gateway's STATUS on a later connection gets that RESULT (or ``running``: it
follows, or ``unknown``). Other requests end with their connection.

A peer that breaks the framing (a text message, an undecodable or oversize frame, a reused
channel, too many requests at once) is closed with 1008 (1003 for text). A request that
decodes but asks for what is not served (an unknown operation, wrong arguments, a program,
path or account the policy refuses) is answered ``refused`` and logged, one line with its
channel; nothing runs.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import Any, Protocol

import anyio
from anyio.abc import TaskGroup

from hpcgate.agent.keeper import EPOCH, ResultKeeper
from hpcgate.agent.policy import Refused
from hpcgate.agent.serve import Server
from hpcgate.agent.streams import Streams
from hpcgate.agentwire import codec
from hpcgate.agentwire import messages as m
from hpcgate.agentwire.frames import Frame, Kind, ProtocolError, control, decode, fields
from hpcgate.agentwire.pipe import STREAM_KINDS
from hpcgate.model.errors import HpcgateError

MAX_IN_FLIGHT = 4096
_OP = re.compile(rb'^\{"op":"([a-z_]{1,32})"')  # the envelope as the gateway encodes it
_OP_WINDOW = 48
MAX_QUEUED_LINES = 256  # per request; a gateway that reads none slows the command's lines
log = logging.getLogger("hpcgate.agent")


class Socket(Protocol):
    """What the session needs of a WebSocket connection (websockets' client has it)."""

    async def send(self, message: bytes) -> None: ...
    async def recv(self) -> str | bytes: ...
    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class Closed(Exception):
    """The session ended because the peer broke the protocol (code, reason)."""


class Session:
    def __init__(
        self,
        socket: Socket,
        server: Server,
        hello: m.Hello,
        keeper: ResultKeeper,
        work: TaskGroup,
        streams: Streams | None = None,
    ) -> None:
        self._socket = socket
        self._server = server
        self._hello = hello
        self._keeper = keeper
        self._work = work  # the agent's: kept requests outlive this connection
        self._streams = streams  # None: no byte streams (``connect`` is refused)
        self._active: dict[int, anyio.CancelScope] = {}
        self.epoch: str | None = None

    async def run(self) -> None:
        """Greet, then serve until the connection ends (its error propagates)."""
        await self._socket.send(control(Kind.HELLO, 0, codec.encode(self._hello, m.Hello)))
        welcome = await self._frame()
        if welcome.kind is not Kind.WELCOME:
            await self._refuse_peer(1008, "the gateway's first frame is no WELCOME")
        epoch = codec.decode(fields(welcome), m.Welcome, "welcome").epoch
        if not EPOCH.fullmatch(epoch):
            await self._refuse_peer(1008, "the gateway's epoch is not alphanumeric")
        self.epoch = epoch
        ended: Exception | None = None
        try:
            async with anyio.create_task_group() as tasks:
                try:
                    await self._read(tasks)
                except Exception as exc:  # raised below, not as a task group's group
                    ended = exc
                tasks.cancel_scope.cancel()  # the connection is gone: so is its own work
        finally:
            self._keeper.detach(self._send_result)
            with anyio.CancelScope(shield=True):
                await self._server.close()
        if ended is not None:
            raise ended

    async def _read(self, tasks: TaskGroup) -> None:
        while True:
            frame = await self._frame()
            if frame.kind is Kind.REQUEST:
                if self._taken(frame.channel):
                    await self._refuse_peer(1008, f"channel {frame.channel} reused or too many")
                self._start(tasks, frame)
            elif frame.kind in STREAM_KINDS and self._streams is not None:
                try:
                    self._streams.deliver(frame)
                except ProtocolError as exc:
                    await self._refuse_peer(1008, str(exc))
            elif frame.kind is Kind.CANCEL:
                scope = self._active.get(frame.channel)
                if scope is not None:
                    scope.cancel()
                self._keeper.cancel(self._key(frame.channel))
            elif frame.kind is Kind.ACK:
                self._keeper.acknowledged(self._key(frame.channel))
            elif frame.kind is Kind.STATUS:
                await self._answer_status(frame.channel)
            else:
                await self._refuse_peer(1008, f"a {frame.kind.name} frame from the gateway")

    def _key(self, channel: int) -> tuple[str, int]:
        return self.epoch or "", channel

    def _taken(self, channel: int) -> bool:
        in_flight = len(self._active) + self._keeper.running
        return (
            channel in self._active
            or self._keeper.known(self._key(channel))
            or (in_flight >= MAX_IN_FLIGHT)
        )

    async def _answer_status(self, channel: int) -> None:
        """The gateway asks what became of a request of an earlier connection."""
        offered = self._keeper.offer(self._key(channel), self._send_result)
        if isinstance(offered, dict):
            await self._send_result(channel, offered)
        else:
            progress = codec.encode(m.Progress(offered), m.Progress)
            await self._socket.send(control(Kind.STATUS, channel, progress))

    async def _frame(self) -> Frame:
        message = await self._socket.recv()
        if isinstance(message, str):
            await self._refuse_peer(1003, "text message")
        try:
            return decode(message)  # type: ignore[arg-type]
        except ProtocolError as exc:
            await self._refuse_peer(1008, str(exc))
            raise  # not reached

    def _start(self, tasks: TaskGroup, frame: Frame) -> None:
        scope = anyio.CancelScope()
        if _is_kept(frame):
            self._keeper.started(self._key(frame.channel), scope, self._send_result)
            self._work.start_soon(self._serve_kept, frame, scope)
            return
        self._active[frame.channel] = scope
        tasks.start_soon(self._serve, frame, scope)

    async def _serve_kept(self, frame: Frame, scope: anyio.CancelScope) -> None:
        """A kept request: its result is kept, then sent if a connection waits for it."""
        key = self._key(frame.channel)
        body: dict[str, object] | None = None
        try:
            with scope:
                body = await self._outcome(frame)
        finally:
            with anyio.CancelScope(shield=True):
                await self._keeper.finished(key, None if scope.cancelled_caught else body)
        await self._keeper.spool_unacknowledged(key)  # its file only if no ACK comes soon

    async def _serve(self, frame: Frame, scope: anyio.CancelScope) -> None:
        try:
            with scope:
                body = await self._outcome(frame)
            if not scope.cancelled_caught:
                await self._send_result(frame.channel, body)
        finally:
            del self._active[frame.channel]

    async def _send_result(self, channel: int, body: dict[str, object]) -> None:
        try:
            await self._socket.send(control(Kind.RESULT, channel, body))
        except Exception as exc:  # the connection broke: the read loop ends the session
            log.warning("the result of request %d was not sent: %s", channel, exc)

    async def _outcome(self, frame: Frame) -> dict[str, object]:
        """The RESULT body for one REQUEST frame."""
        op = "?"
        try:
            request, account = m.parse_request(fields(frame))
            op = request.op
            if isinstance(request, m.STREAMED):
                if self._streams is None:
                    raise Refused("this agent opens no streams")
                value = await self._streams.serve(frame.channel, request, account)
            else:
                value = await self._lines_while(frame.channel, request, account)
            return m.result_fields(request, value)
        except (ProtocolError, Refused) as exc:
            log.warning("refused request %d (%s): %s", frame.channel, op, exc)
            return m.failure_fields("refused", str(exc))
        except HpcgateError as exc:
            return m.failure_fields(type(exc).__name__, str(exc))
        except Exception as exc:  # the agent stays up; the gateway hears what broke
            log.exception("request %d (%s) failed", frame.channel, op)
            return m.failure_fields("TransportError", f"the agent failed: {exc}")

    async def _lines_while(self, channel: int, request: m.Request[Any], account: str | None) -> Any:
        """Serve ``request``, its stderr lines sent as LINE frames as they come (all of them
        before the result)."""
        send, receive = anyio.create_memory_object_stream[str](MAX_QUEUED_LINES)

        def on_line(line: str) -> None:
            with contextlib.suppress(anyio.WouldBlock):  # behind: a progress line is skipped
                send.send_nowait(line[:4096])

        failure: Exception | None = None
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(self._send_lines, channel, receive)
            with send:
                try:
                    value = await self._server.handle(request, account, on_line)
                except Exception as exc:  # raised below, not as a task group's group
                    failure = exc
        if failure is not None:
            raise failure
        return value

    async def _send_lines(self, channel: int, lines: anyio.abc.ObjectReceiveStream[str]) -> None:
        async with lines:
            async for line in lines:
                # a broken connection: a kept command goes on, its lines are dropped
                with contextlib.suppress(Exception):
                    await self._socket.send(control(Kind.LINE, channel, {"line": line}))

    async def _refuse_peer(self, code: int, reason: str) -> None:
        log.warning("closing the connection (%d): %s", code, reason)
        await self._socket.close(code, reason[:120])
        raise Closed(code, reason)


def _is_kept(frame: Frame) -> bool:
    """Whether a REQUEST frame names an operation whose result is kept (by its name only:
    the request is decoded, strictly, once, where it is served)."""
    match = _OP.search(frame.body[:_OP_WINDOW])
    kind = m.OPERATIONS.get(match.group(1).decode("ascii")) if match else None
    return kind is not None and m.kept(kind)
