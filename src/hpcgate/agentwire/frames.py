"""One frame per WebSocket binary message, between the gateway and an outbound agent.

A frame is a 9-byte header, ``kind`` (one byte) and ``channel`` (eight, big-endian), then a
body. A channel is one request and everything that belongs to it (its result, its data, its
flow control); the gateway numbers them, never reusing one on a connection. Control kinds
carry one JSON object; ``DATA`` carries raw bytes of the channel's stream.

Decoding trusts nothing: an unknown kind, a short header, an oversize body, JSON that is not
one object (or holds NaN, Infinity, a duplicate key, or nests too deep) is a
:class:`ProtocolError`, never another exception. The peer that sent it is closed.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass

HEADER = struct.Struct("!BQ")
MAX_CONTROL_BODY = 1024 * 1024  # a request's argv and a result's output fit well within
MAX_DATA_BODY = 256 * 1024  # one frame of a stream this side accepts (the window grants more)
PEER_DATA_BODY = 64 * 1024  # what every peer accepts; larger only when its CREDIT says so
MAX_CHANNEL = 2**63 - 1


class ProtocolError(Exception):
    """The peer sent something the protocol does not allow; the connection ends."""


class Kind(enum.IntEnum):
    HELLO = 1  # agent -> gateway, channel 0: who the agent is and what it serves
    WELCOME = 2  # gateway -> agent, channel 0: the connection is taken
    REQUEST = 3  # gateway -> agent: one operation
    RESULT = 4  # agent -> gateway: its outcome
    ACK = 5  # gateway -> agent: the result arrived; the agent may forget it
    CANCEL = 6  # gateway -> agent: stop the operation
    STATUS = 7  # gateway -> agent after a reconnect: what became of this request? (the
    #             agent answers the kept RESULT, or STATUS {"state": running | unknown})
    CREDIT = 8  # either way: more bytes the sender of DATA may send on the channel
    CLOSE = 9  # either way: no more DATA on the channel from this side
    DATA = 10  # either way: bytes of the channel's stream
    LINE = 11  # agent -> gateway: one stderr line of a running command (run_long, run_files)


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Kind
    channel: int
    body: bytes


def encode(kind: Kind, channel: int, body: bytes | memoryview = b"") -> bytes:
    """A frame as the bytes of one WebSocket message (one copy of ``body``)."""
    if not 0 <= channel <= MAX_CHANNEL:
        raise ValueError(f"channel {channel} out of range")
    if len(body) > _limit(kind):
        raise ValueError(f"{kind.name} body of {len(body)} bytes is over {_limit(kind)}")
    return HEADER.pack(kind, channel) + body


def control(kind: Kind, channel: int, fields: Mapping[str, object]) -> bytes:
    """A control frame whose body is ``fields`` as compact JSON."""
    if kind is Kind.DATA:
        raise ValueError("DATA carries bytes, not fields")
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return encode(kind, channel, text.encode("utf-8"))


def decode(message: bytes) -> Frame:
    """The frame in one received WebSocket message."""
    if len(message) < HEADER.size:
        raise ProtocolError(f"a frame of {len(message)} bytes has no header")
    number, channel = HEADER.unpack_from(message)
    kind = _kind(number)
    body = message[HEADER.size :]
    if len(body) > _limit(kind):
        raise ProtocolError(f"{kind.name} body of {len(body)} bytes is over {_limit(kind)}")
    if channel > MAX_CHANNEL:
        raise ProtocolError(f"channel {channel} out of range")
    return Frame(kind, channel, body)


def fields(frame: Frame) -> dict[str, object]:
    """A control frame's JSON object."""
    if frame.kind is Kind.DATA:
        raise ProtocolError("DATA has no fields")
    try:
        value = json.loads(
            frame.body.decode("utf-8"),
            object_pairs_hook=_unique,
            parse_constant=_no_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ProtocolError(f"{frame.kind.name} body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"{frame.kind.name} body is not a JSON object")
    return value


def _kind(number: int) -> Kind:
    try:
        return Kind(number)
    except ValueError:
        raise ProtocolError(f"unknown frame kind {number}") from None


def _limit(kind: Kind) -> int:
    return MAX_DATA_BODY if kind is Kind.DATA else MAX_CONTROL_BODY


def _unique(pairs: list[tuple[str, object]]) -> dict[str, object]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("a key appears twice")
    return result


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number JSON allows")
