"""WebSockets to a replica, and the relay between one and the caller's.

The upgrade request goes through the replica's connection pool like any proxied request
(the connection leaves the pool for good when the replica answers 101); then websockets'
sans-I/O protocol speaks frames on that connection. The relay carries whole messages, text
and binary, and the close code and reason, each way; each direction reads its next message
only when the last one is sent on (backpressure). Pings are answered on each hop (the
caller's by the gateway's server, the replica's here), not carried end to end: an ASGI
application never sees control frames.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import anyio
from websockets.client import ClientProtocol
from websockets.frames import Close, CloseCode, Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri
from websockets.utils import accept_key

from hpcgate.services.connection import Connection, ReplicaError

log = logging.getLogger(__name__)

#: The largest message relayed either way (the gateway's server takes as much from callers).
MAX_MESSAGE_BYTES = 16 << 20
#: How long the replica has to answer a close the caller started before it is cut off.
CLOSE_SECONDS = 5.0
#: How much of a refusal's body (the replica's non-101 answer) goes back to the caller.
REFUSAL_BYTES = 64 << 10
#: Close codes no close frame may carry, and what goes on the wire instead.
_TO_REPLICA: dict[int, int] = {CloseCode.ABNORMAL_CLOSURE: CloseCode.GOING_AWAY}
_TO_CALLER: dict[int, int] = {
    CloseCode.NO_STATUS_RCVD: CloseCode.NORMAL_CLOSURE,
    CloseCode.ABNORMAL_CLOSURE: CloseCode.BAD_GATEWAY,
    CloseCode.TLS_HANDSHAKE: CloseCode.BAD_GATEWAY,
}
#: The caller's handshake headers the gateway's own handshake with the replica replaces
#: (no extension is negotiated with the replica: its frames are plain).
HANDSHAKE = frozenset({b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions"})


@dataclass(frozen=True, slots=True)
class Message:
    """One WebSocket message (``data``), or the end of the socket (``data`` None, with the
    close ``code`` and ``reason``)."""

    data: str | bytes | None
    code: int = CloseCode.NORMAL_CLOSURE
    reason: str = ""

    @property
    def closing(self) -> bool:
        return self.data is None


def caller_close(message: Message) -> tuple[int, str]:
    """The code and reason of a close the caller can be sent (1005 and 1006 describe a
    socket, they cannot be sent)."""
    return int(_TO_CALLER.get(message.code, message.code)), message.reason


@dataclass(frozen=True, slots=True)
class Refusal:
    """The replica's answer when it did not switch to WebSocket: it goes back as it was."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


def upgrade_headers(key: str) -> list[tuple[bytes, bytes]]:
    return [
        (b"connection", b"Upgrade"),
        (b"upgrade", b"websocket"),
        (b"sec-websocket-version", b"13"),
        (b"sec-websocket-key", key.encode()),
    ]


def accepted(status: int, got: Sequence[tuple[bytes, bytes]], key: str) -> bool:
    """Whether the replica's answer switches to WebSocket as the handshake asks."""
    headers = {name.lower(): value for name, value in got}
    return (
        status == 101
        and headers.get(b"upgrade", b"").lower() == b"websocket"
        and headers.get(b"sec-websocket-accept", b"").decode("latin-1") == accept_key(key)
    )


async def read_refusal(connection: Connection, timeout: float) -> bytes:
    """The start of the refusal's body (up to :data:`REFUSAL_BYTES`)."""
    body = bytearray()
    while (chunk := await connection.piece(timeout)) is not None:
        body += chunk[: REFUSAL_BYTES - len(body)]
        if len(body) >= REFUSAL_BYTES:
            break
    return bytes(body)


class ReplicaSocket:
    """An open WebSocket to a replica: whole messages in and out.

    ``receive`` and ``send`` may run at once (one task each way); writes are serialised.
    The socket never raises on a broken connection: ``receive`` then gives the end, 1006.
    """

    def __init__(
        self, connection: Connection, got: Sequence[tuple[bytes, bytes]], uri: str
    ) -> None:
        self._connection = connection
        self._early = connection.switched()  # frames that came with the 101
        self._protocol = ClientProtocol(
            parse_uri(uri), state=State.OPEN, max_size=MAX_MESSAGE_BYTES
        )
        self._frames: deque[Frame] = deque()
        self._parts: list[bytes] = []
        self._opcode: Opcode | None = None
        self._write = anyio.Lock()
        self._broken = False
        self._failed = False  # the replica broke the protocol: this side closed
        headers = {name.lower(): value for name, value in got}
        chosen = headers.get(b"sec-websocket-protocol")
        self.subprotocol = chosen.decode("latin-1") if chosen else None

    async def send(self, message: Message) -> None:
        if self._protocol.state is not State.OPEN:
            return
        if isinstance(message.data, str):
            self._protocol.send_text(message.data.encode())
        elif isinstance(message.data, bytes):
            self._protocol.send_binary(message.data)
        else:
            code = _TO_REPLICA.get(message.code, message.code)
            sendable = code != CloseCode.NO_STATUS_RCVD
            self._protocol.send_close(code if sendable else None, message.reason)
        await self._flush()

    async def receive(self) -> Message:
        while True:
            while self._frames:
                message = self._take(self._frames.popleft())
                if message is not None:
                    return message
            if self._broken or self._failed or self._protocol.state is State.CLOSED:
                return self._end()  # after a protocol error, not waiting for the replica
            await self._read()

    async def _read(self) -> None:
        data, self._early = self._early, b""
        try:
            data = data or await self._connection.read()
        except ReplicaError as exc:
            log.info("a replica's WebSocket broke off: %s", exc)
            data = b""
        if data:
            self._protocol.receive_data(data)
            self._failed = self._failed or self._protocol.parser_exc is not None
        else:
            self._broken = True
            self._protocol.receive_eof()
        self._frames.extend(e for e in self._protocol.events_received() if isinstance(e, Frame))
        await self._flush()  # pongs, the answer to a close, a close after a protocol error

    async def _flush(self) -> None:
        async with self._write:
            for data in self._protocol.data_to_send():
                if data and not self._broken:
                    await self._write_out(data)

    async def _write_out(self, data: bytes) -> None:
        try:
            await self._connection.write(data)
        except ReplicaError as exc:
            log.info("a replica's WebSocket broke off: %s", exc)
            self._broken = True

    def _take(self, frame: Frame) -> Message | None:
        """The message ``frame`` completes, if any (fragments are gathered)."""
        if frame.opcode is Opcode.CLOSE:
            close = Close.parse(frame.data)
            return Message(None, close.code, close.reason)
        if frame.opcode in (Opcode.TEXT, Opcode.BINARY):
            self._opcode, self._parts = frame.opcode, []
        elif frame.opcode is not Opcode.CONT:
            return None  # ping or pong: answered already
        self._parts.append(bytes(frame.data))
        if not frame.fin:
            return None
        data = b"".join(self._parts)
        self._parts = []
        if self._opcode is Opcode.BINARY:
            return Message(data)
        try:
            return Message(data.decode())
        except UnicodeDecodeError:
            self._protocol.fail(CloseCode.INVALID_DATA, "text that is not UTF-8")
            return Message(None, CloseCode.INVALID_DATA, "the replica sent text that is not UTF-8")

    def _end(self) -> Message:
        """The end of a socket that closed without a close frame from the replica: the
        close this side sent on a protocol error (too big, malformed), else 1006."""
        sent = self._protocol.close_sent
        if sent is not None and self._protocol.close_rcvd is None and self._failed:
            return Message(None, sent.code, sent.reason)
        return Message(None, CloseCode.ABNORMAL_CLOSURE, "the replica's connection broke off")


Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def relay(replica: ReplicaSocket, receive: Receive, send: Send) -> None:
    """Carry messages between the caller (``receive``/``send``) and the replica until one
    side closes: the replica's close ends the relay; after the caller's, the replica has
    ``CLOSE_SECONDS`` to answer it."""
    async with anyio.create_task_group() as group:

        async def down() -> None:
            await _pump(replica.receive, send)
            group.cancel_scope.cancel()

        async def up() -> None:
            await _pump(receive, replica.send)
            group.cancel_scope.deadline = anyio.current_time() + CLOSE_SECONDS

        group.start_soon(down)
        group.start_soon(up)


async def _pump(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        await send(message)
        if message.closing:
            return
