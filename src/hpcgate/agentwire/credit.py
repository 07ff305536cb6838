"""Flow control of a channel's DATA, as SSH and HTTP/2 do it: a sender may send only as
many bytes as the receiver has granted, and the receiver grants more as its consumer takes
what arrived. A slow reader at one end thus slows the writer at the other, with at most
one window of bytes held between them, and one busy channel never starves the others of
memory.

A peer that sends beyond what it was granted, or grants more than a window can hold, breaks
the protocol (:class:`~hpcgate.agentwire.frames.ProtocolError`).
"""

from __future__ import annotations

import anyio

from hpcgate.agentwire.frames import MAX_DATA_BODY, PEER_DATA_BODY, ProtocolError

INITIAL_WINDOW = 1024 * 1024
MAX_WINDOW = 16 * 1024 * 1024


class SendWindow:
    """The bytes this side may still send on one channel."""

    def __init__(self, initial: int = INITIAL_WINDOW) -> None:
        self._available = initial
        self._frame = PEER_DATA_BODY  # the largest DATA body the peer takes
        self._changed = anyio.Event()
        self._closed = False

    @property
    def available(self) -> int:
        return self._available

    def grant(self, amount: int, frame: int | None = None) -> None:
        """The peer's CREDIT: ``amount`` more bytes may be sent, in DATA frames of up to
        ``frame`` bytes (None: as before; a peer that says nothing takes 64 KiB)."""
        if amount <= 0 or self._available + amount > MAX_WINDOW:
            raise ProtocolError(f"a grant of {amount} bytes on a window of {self._available}")
        if frame is not None:
            if not PEER_DATA_BODY <= frame <= MAX_WINDOW:
                raise ProtocolError(f"DATA frames of {frame} bytes")
            self._frame = min(frame, MAX_DATA_BODY)  # what this side sends at most
        self._available += amount
        self._wake()

    async def take(self, wanted: int) -> int:
        """Wait until something may be sent, then take up to ``wanted`` bytes of it (and
        at most one frame's worth). ClosedResourceError once the channel has closed."""
        while self._available == 0 and not self._closed:
            await self._changed.wait()
        if self._closed:
            raise anyio.ClosedResourceError
        taken = min(wanted, self._available, self._frame)
        self._available -= taken
        return taken

    def close(self) -> None:
        """The channel ended: whoever waits to send stops waiting."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = anyio.Event()


class ReceiveWindow:
    """The bytes the peer may still send on one channel, and the grants that reopen it."""

    def __init__(self, size: int = INITIAL_WINDOW) -> None:
        self._size = size
        self._granted = size  # what the peer may send before our next grant
        self._held = 0  # arrived, not yet taken by the consumer
        self._taken = 0  # taken since our last grant

    def received(self, count: int) -> None:
        """DATA of ``count`` bytes arrived."""
        if count > self._granted:
            raise ProtocolError(f"{count} bytes of DATA where {self._granted} were granted")
        self._granted -= count
        self._held += count

    def consumed(self, count: int) -> int:
        """The consumer took ``count`` of the bytes held; the grant to send now (0: none
        yet, so that grants go in batches of at least half a window)."""
        if not 0 <= count <= self._held:
            raise ValueError(f"{count} bytes consumed of {self._held} held")
        self._held -= count
        self._taken += count
        if self._taken < self._size // 2:
            return 0
        grant, self._taken = self._taken, 0
        self._granted += grant
        return grant
