"""One channel's byte stream, both ways, over DATA, CREDIT and CLOSE frames: the same on the
gateway's side and the agent's.

- ``DATA`` carries the bytes; a side sends only as many as the other granted
  (:mod:`.credit`), so what arrives is held in a buffer of at most one window, and taking
  a frame off the connection never waits for a slow consumer: one slow stream never holds
  up the others on the connection.
- ``CREDIT`` ``{"bytes": n, "frame": f}`` grants ``n`` more bytes, in DATA frames of up
  to ``f`` bytes (without ``frame``, as older peers send it: 64 KiB, what every peer
  takes; older peers ignore it). The agent's first CREDIT on a ``connect`` channel also
  says that its TCP connection is open.
- ``CLOSE`` ``{}`` is a half-close: no more DATA from that side (the other may still
  send). ``CLOSE`` ``{"error": "..."}`` says the stream broke; the reader gets
  ``BrokenResourceError``.

A peer's DATA beyond its grant, after its CLOSE, or a CREDIT that is not a positive
number within the window's bound is a :class:`~.frames.ProtocolError`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

import anyio
from anyio.abc import ByteStream

from hpcgate.agentwire.credit import INITIAL_WINDOW, ReceiveWindow, SendWindow
from hpcgate.agentwire.frames import (
    MAX_DATA_BODY,
    Frame,
    Kind,
    ProtocolError,
    control,
    encode,
    fields,
)

Send = Callable[[bytes], Awaitable[None]]
STREAM_KINDS = frozenset({Kind.DATA, Kind.CREDIT, Kind.CLOSE})
MAX_ERROR = 500  # characters of a CLOSE's error


def credit(channel: int, amount: int) -> bytes:
    """A CREDIT of ``amount`` bytes on ``channel``, in frames as large as this side takes."""
    return control(Kind.CREDIT, channel, {"bytes": amount, "frame": MAX_DATA_BODY})


class Pipe(ByteStream):
    """The byte stream of channel ``channel``; ``send`` puts one frame on the connection."""

    def __init__(self, channel: int, send: Send, may_send: int = INITIAL_WINDOW) -> None:
        self.channel = channel
        self._send_frame = send
        self._out = SendWindow(may_send)
        self._in = ReceiveWindow(INITIAL_WINDOW)
        self._held: deque[bytes] = deque()
        self._arrived = anyio.Event()
        self._their_eof = False  # the peer sent CLOSE (or the connection ended)
        self._error: str | None = None
        self._our_eof = False  # we sent CLOSE
        self.opened = anyio.Event()  # the first CREDIT came

    # ------------------------------------------------------------------ from the peer

    def deliver(self, frame: Frame) -> None:
        """A DATA, CREDIT or CLOSE frame of this channel (ProtocolError if not allowed)."""
        if frame.kind is Kind.DATA:
            if self._their_eof:
                raise ProtocolError(f"DATA after CLOSE on channel {self.channel}")
            self._in.received(len(frame.body))
            if frame.body:
                self._held.append(frame.body)
        elif frame.kind is Kind.CREDIT:
            body = fields(frame)
            amount, size = body.get("bytes"), body.get("frame")
            if not _whole(amount) or not (size is None or _whole(size)):
                raise ProtocolError("a CREDIT is {'bytes': <a whole number>[, 'frame': <one>]}")
            self._out.grant(amount, size)  # type: ignore[arg-type]
            self.opened.set()
        elif frame.kind is Kind.CLOSE:
            error = fields(frame).get("error")
            self._end(str(error)[:MAX_ERROR] if error is not None else None)
        else:
            raise ProtocolError(f"a {frame.kind.name} frame is no stream's")
        self._wake()

    def abort(self, reason: str | None) -> None:
        """The stream ended (None: cleanly, the peer's end of file) or broke (the connection
        ended, or it was cancelled): whoever waits on it stops waiting, with EndOfStream
        once what arrived is read, or BrokenResourceError."""
        self._end(reason)
        self._out.close()
        self.opened.set()
        self._wake()

    @property
    def error(self) -> str | None:
        """Why the stream broke (None: it did not)."""
        return self._error

    def _end(self, error: str | None) -> None:
        self._their_eof = True
        if error is not None and self._error is None:
            self._error = error

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = anyio.Event()

    # ------------------------------------------------------------------ ByteStream

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self._held:
            if self._error is not None:
                raise anyio.BrokenResourceError(self._error)
            if self._their_eof:
                raise anyio.EndOfStream
            await self._arrived.wait()
        chunk = self._held.popleft()
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            self._held.appendleft(rest)
        grant = self._in.consumed(len(chunk))
        if grant and not self._their_eof:
            await self._send_frame(credit(self.channel, grant))
        return chunk

    async def send(self, item: bytes) -> None:
        if self._our_eof:
            raise anyio.ClosedResourceError
        view = memoryview(item)
        while view:
            try:
                count = await self._out.take(len(view))
            except anyio.ClosedResourceError:
                raise anyio.BrokenResourceError(self._error or "the stream ended") from None
            await self._send_frame(encode(Kind.DATA, self.channel, view[:count]))
            view = view[count:]

    async def send_eof(self) -> None:
        if not self._our_eof and self._error is None:
            self._our_eof = True
            await self._send_frame(control(Kind.CLOSE, self.channel, {}))

    async def fail(self, reason: str) -> None:
        """Tell the peer that this side's stream broke (its reader gets an error)."""
        if not self._our_eof:
            self._our_eof = True
            text = reason[:MAX_ERROR]
            await self._send_frame(control(Kind.CLOSE, self.channel, {"error": text}))

    async def aclose(self) -> None:
        self.abort("the stream was closed")


def _whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
