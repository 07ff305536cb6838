"""The agent's frames: what a peer sends is decoded to a frame or refused as a
ProtocolError, never another exception (the codec is the first thing a lying peer meets)."""

from __future__ import annotations

import json
import random

import pytest

from hpcgate.agentwire.frames import (
    HEADER,
    MAX_CONTROL_BODY,
    MAX_DATA_BODY,
    Frame,
    Kind,
    ProtocolError,
    control,
    decode,
    encode,
    fields,
)


def test_control_frame_round_trip() -> None:
    message = control(Kind.REQUEST, 7, {"op": "run", "argv": ["squeue", "--me"], "n": 1})
    frame = decode(message)
    assert frame == Frame(Kind.REQUEST, 7, message[HEADER.size :])
    assert fields(frame) == {"op": "run", "argv": ["squeue", "--me"], "n": 1}


def test_data_frame_carries_bytes_as_they_are() -> None:
    payload = bytes(range(256)) * 4
    assert decode(encode(Kind.DATA, 2**63 - 1, payload)) == Frame(Kind.DATA, 2**63 - 1, payload)


def test_text_with_any_characters_survives() -> None:
    text = 'line\n"quoted"\u2028\x00é'
    assert fields(decode(control(Kind.RESULT, 1, {"stdout": text}))) == {"stdout": text}


@pytest.mark.parametrize(
    "message",
    [
        b"",
        b"\x03\x00\x00",  # a header cut short
        HEADER.pack(0, 1),  # kind 0 is none
        HEADER.pack(200, 1),
        HEADER.pack(Kind.DATA, 2**63) + b"x",  # channel beyond 63 bits
        HEADER.pack(Kind.DATA, 1) + b"x" * (MAX_DATA_BODY + 1),
        HEADER.pack(Kind.RESULT, 1) + b" " * (MAX_CONTROL_BODY + 1),
    ],
)
def test_malformed_frames_are_refused(message: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode(message)


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2]",  # not an object
        b'"text"',
        b"",
        b"{",
        b'{"a": NaN}',
        b'{"a": Infinity}',
        b'{"a": 1, "a": 2}',  # a duplicate key: which one would the other side read?
        b"\xff\xfe{}",  # not UTF-8
        b"[" * 100_000 + b"]" * 100_000,  # nested past the parser's recursion limit
    ],
)
def test_bad_control_bodies_are_refused(body: bytes) -> None:
    frame = decode(HEADER.pack(Kind.RESULT, 1) + body)
    with pytest.raises(ProtocolError):
        fields(frame)


def test_data_frames_have_no_fields() -> None:
    with pytest.raises(ProtocolError):
        fields(decode(encode(Kind.DATA, 1, b"{}")))


def test_encoding_refuses_what_decoding_would() -> None:
    with pytest.raises(ValueError, match="is over"):
        encode(Kind.DATA, 1, b"x" * (MAX_DATA_BODY + 1))
    with pytest.raises(ValueError, match="out of range"):
        encode(Kind.DATA, -1)
    with pytest.raises(ValueError, match="carries bytes"):
        control(Kind.DATA, 1, {})
    with pytest.raises(ValueError, match="Out of range float"):
        control(Kind.RESULT, 1, {"x": float("nan")})


def test_random_bytes_never_raise_anything_else() -> None:
    chance = random.Random(17)
    for _ in range(5_000):
        size = chance.choice((0, 1, 8, 9, 10, 40))
        message = bytes(chance.getrandbits(8) for _ in range(size))
        try:
            frame = decode(message)
            if frame.kind is not Kind.DATA:
                fields(frame)
        except ProtocolError:
            continue


def test_fields_keep_large_numbers_exact() -> None:
    body = json.dumps({"offset": 2**62 + 1}).encode()
    assert fields(decode(HEADER.pack(Kind.REQUEST, 3) + body)) == {"offset": 2**62 + 1}
