"""Bulk reads through an agent (``handle_read_bulk``) on the gateway's side: a download's
bytes on a data connection of their own instead of DATA frames on the agent's WebSocket.

The gateway names each such read with an unguessable id (:func:`new_stream_id`) that it
sends only on the agent's connection; the agent POSTs the bytes, as one chunked request
body, to ``/api/v1/agent/streams/{id}`` with its agent token (the agent still only dials
out). :class:`BulkStreams` hands a read to the first POST that names its id *and* carries
the token of the connection it was sent on, once; an unknown, used, expired or other
agent's id is not found. The POST's body goes into a :class:`BulkPipe` of at most
:data:`BUFFER` bytes, which the download takes from: while the pipe is full the POST stops
reading its body (the server stops reading the socket, TCP stops the agent's writes, and
the agent stops reading the file), so a slow client slows the agent, with bounded memory.

A read ends whole only when the body ended whole (its last chunk came); the agent's
connection breaking, its POST breaking off, its token revoked, or no POST within
:data:`CLAIM_WAIT` break it, and the reader gets ``BrokenResourceError``, never a short
end of file.
"""

from __future__ import annotations

import contextlib
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Iterator

import anyio

from hpcgate.agentwire.frames import Frame, Kind, ProtocolError, control

BUFFER = 4 * 1024 * 1024  # bytes held between the agent's POST and the reader, at most
CLAIM_WAIT = 10.0  # seconds the agent has to open a read's data connection
CANCEL_WAIT = 1.0  # seconds a CANCEL may take to send before the read is let go anyway


def new_stream_id() -> str:
    """43 URL-safe characters, 256 random bits."""
    return secrets.token_urlsafe(32)


class BulkPipe:
    """One bulk read's bytes: put by the agent's POST, taken by the reader."""

    def __init__(self, channel: int, token_id: str, stream_id: str) -> None:
        self.channel = channel
        self.token_id = token_id  # the agent token of the connection that asked for it
        self.stream_id = stream_id
        self.claimed = False
        self._deadline = anyio.current_time() + CLAIM_WAIT
        self._held: deque[bytes] = deque()
        self._size = 0
        self._changed = anyio.Event()
        self._whole = False  # the POST's body ended with its last chunk
        self._error: str | None = None
        self._feeder: anyio.CancelScope | None = None

    @property
    def error(self) -> str | None:
        """Why the read broke (None: it did not)."""
        return self._error

    @property
    def over(self) -> bool:
        return self._whole or self._error is not None

    def deliver(self, frame: Frame) -> None:
        """No DATA, CREDIT or CLOSE belongs on a bulk read's channel."""
        raise ProtocolError(f"a {frame.kind.name} frame on bulk read {self.channel}")

    # ------------------------------------------------------------------ the agent's POST

    @contextlib.contextmanager
    def feeding(self) -> Iterator[anyio.CancelScope]:
        """The scope the POST reads its body in; a break of the read cancels it."""
        with anyio.CancelScope() as scope:
            self._feeder = scope
            if self._error is not None:
                scope.cancel()
            yield scope

    async def put(self, data: bytes) -> None:
        """Hold ``data`` for the reader, once there is room (BrokenResourceError: the read
        is over, its reader gone)."""
        while self._size >= BUFFER and not self.over:
            await self._wait()
        if self.over:
            raise anyio.BrokenResourceError(self._error or "the read had ended")
        if data:
            self._held.append(data)
            self._size += len(data)
            self._wake()

    def finish(self) -> None:
        """The POST's body ended whole: the reader gets end of file after what is held."""
        if self._error is None:
            self._whole = True
            self._wake()

    # ------------------------------------------------------------------ the reader's side

    async def receive(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of what arrived (EndOfStream at the end of a whole body)."""
        while not self._held:
            if self._error is not None:
                raise anyio.BrokenResourceError(self._error)
            if self._whole:
                raise anyio.EndOfStream
            await self._wait_claimed()
        chunk = self._held.popleft()
        if len(chunk) > max_bytes:
            chunk, rest = chunk[:max_bytes], chunk[max_bytes:]
            self._held.appendleft(rest)
        self._size -= len(chunk)
        self._wake()
        return chunk

    async def _wait_claimed(self) -> None:
        if self.claimed:
            await self._wait()
            return
        with anyio.move_on_after(max(self._deadline - anyio.current_time(), 0)):
            await self._wait()
        if not self.claimed and not self.over:
            self.abort("the agent's data connection did not come in time")

    def abort(self, reason: str | None) -> None:
        """The read ended: its RESULT came (``reason`` None: the agent says all was sent,
        which holds only once its body ended whole) or it broke."""
        if reason is None:
            if self._whole:
                return
            reason = "the agent ended the read before its data connection did"
        if self._error is None and not self._whole:
            self._error = reason
        if self._feeder is not None:
            self._feeder.cancel()
        self._wake()

    async def _wait(self) -> None:
        await self._changed.wait()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


class BulkStreams:
    """This gateway process's bulk reads not yet claimed by their agent's POST, by id."""

    def __init__(self) -> None:
        self._waiting: dict[str, BulkPipe] = {}

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, pipe: BulkPipe) -> None:
        self._waiting[pipe.stream_id] = pipe

    def drop(self, pipe: BulkPipe) -> None:
        if self._waiting.get(pipe.stream_id) is pipe:
            del self._waiting[pipe.stream_id]

    def claim(self, stream_id: str, token_id: str) -> BulkPipe | None:
        """The read ``stream_id`` names, for the POST of an agent holding ``token_id``; None
        if there is none such: never sent, used, over, or asked of another token's agent
        (which leaves it to its own agent)."""
        pipe = self._waiting.get(stream_id)
        if pipe is None or not secrets.compare_digest(pipe.token_id, token_id) or pipe.over:
            return None
        del self._waiting[stream_id]
        pipe.claimed = True
        return pipe


class BulkStream:
    """A bulk read as its reader holds it: closing it before the agent's RESULT sends a
    CANCEL (the agent stops reading and drops its data connection)."""

    def __init__(
        self,
        pipe: BulkPipe,
        waiting: BulkStreams,
        forget: Callable[[int], bool],
        send: Callable[[bytes], Awaitable[None]],
        link_broken: Callable[[], bool],
    ) -> None:
        self._pipe = pipe
        self._waiting = waiting
        self._forget = forget
        self._send = send
        self._link_broken = link_broken
        self._closed = False

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._waiting.drop(self._pipe)
        ended = self._forget(self._pipe.channel)
        self._pipe.abort("the read was closed")
        if not ended and not self._link_broken():
            with (
                anyio.CancelScope(shield=True),
                anyio.move_on_after(CANCEL_WAIT),
                contextlib.suppress(Exception),
            ):
                await self._send(control(Kind.CANCEL, self._pipe.channel, {}))
