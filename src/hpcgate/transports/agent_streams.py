"""Byte streams through an agent, on the gateway's side: each a ``connect`` request whose
channel then carries DATA both ways (:mod:`hpcgate.agentwire.pipe`), on the agent's one
connection, beside its other requests (and the bulk reads of :mod:`.agent_bulk`, whose
bytes come on a connection of their own but whose RESULT and CANCEL use a channel here).

:class:`LinkStreams` is one connection's table of open streams; :class:`AgentStream` is one
of them as an anyio byte stream (what the service proxy and the function link read and
write). Closing it before the agent's RESULT sends a CANCEL (the agent closes its TCP
connection); a broken connection breaks every stream on it (BrokenResourceError).
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import ByteStream

from hpcgate.agentwire.frames import Frame, Kind, control
from hpcgate.agentwire.pipe import Pipe
from hpcgate.transports.agent_bulk import BulkPipe

CANCEL_WAIT = 1.0  # seconds a CANCEL may take to send before the stream is let go anyway


class LinkStreams:
    """The streams open on one agent connection, by channel."""

    def __init__(self) -> None:
        self._pipes: dict[int, Pipe | BulkPipe] = {}
        self._results: dict[int, dict[str, object]] = {}
        self.broken: str | None = None

    def __len__(self) -> int:
        return len(self._pipes)

    def add(self, pipe: Pipe | BulkPipe) -> None:
        self._pipes[pipe.channel] = pipe

    def forget(self, channel: int) -> bool:
        """Let the stream go; whether the agent had ended it (its RESULT came)."""
        self._pipes.pop(channel, None)
        return self._results.pop(channel, None) is not None

    def deliver(self, frame: Frame) -> None:
        """A DATA, CREDIT or CLOSE frame (ProtocolError if its stream's rules forbid it); a
        frame of a stream already let go is dropped (it crossed our CANCEL)."""
        pipe = self._pipes.get(frame.channel)
        if pipe is not None:
            pipe.deliver(frame)

    def ended(self, channel: int, body: dict[str, object]) -> bool:
        """A RESULT of a stream's channel; whether it was one (else: of nothing we know)."""
        pipe = self._pipes.get(channel)
        if pipe is None:
            return False
        self._results[channel] = body
        error = body.get("error")
        if body.get("ok") is not True:
            message = error.get("message") if isinstance(error, dict) else None
            pipe.abort(str(message or "the agent's stream failed")[:2000])
        else:
            pipe.abort(None)
        return True

    def result(self, channel: int) -> dict[str, object] | None:
        return self._results.get(channel)

    def break_all(self, reason: str) -> None:
        """The connection ended: every stream on it breaks."""
        self.broken = reason
        for pipe in self._pipes.values():
            pipe.abort(reason)


class AgentStream(ByteStream):
    """One stream through an agent (the caller closes it)."""

    def __init__(
        self, pipe: Pipe, table: LinkStreams, send: Callable[[bytes], Awaitable[None]]
    ) -> None:
        self._pipe = pipe
        self._table = table
        self._send = send
        self._closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._pipe.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        await self._pipe.send(item)

    async def send_eof(self) -> None:
        await self._pipe.send_eof()

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        channel = self._pipe.channel
        ended = self._table.forget(channel)
        self._pipe.abort("the stream was closed")
        if not ended and self._table.broken is None:
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(CANCEL_WAIT),
                contextlib.suppress(Exception),
            ):
                await self._send(control(Kind.CANCEL, channel, {}))
