"""The SDK's checks of an encrypted invocation's frames: events sealed by the worker's own
:class:`~hpcgate.worker.Sealer` (in this process), then tampered with, reordered, replayed,
moved, relabelled or sent in clear, as a gateway could; each is refused."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from hpcgate import worker
from hpcgate.client import SealBroken
from hpcgate.client._functions import Error, Output, Result, Stream
from hpcgate.client._jobs import Event
from hpcgate.client._sealed import Opener

KEY = "inv-1"


def _frames(opener: Opener, *bodies: str) -> list[Event]:
    """The SSE frames a gateway relays: the worker's key event, then each body sealed."""
    sealer = worker.Sealer(KEY, base64.urlsafe_b64decode(opener.public_key + "="), True)
    lines = [sealer.key_body(), *(sealer.seal(seq, b) for seq, b in enumerate(bodies, 2))]
    return [_frame(seq, json.loads("{" + line + "}")) for seq, line in enumerate(lines, 1)]


def _frame(seq: int, event: dict[str, Any]) -> Event:
    return Event(event["type"], json.dumps(event["data"]), str(seq))


def _stream() -> Stream:
    return Stream("f", {}, KEY, 0, opener=Opener())


def _take_all(stream: Stream, frames: list[Event]) -> None:
    for frame in frames:
        stream.take(frame)


BODIES = (
    worker.output_body("one"),
    worker.output_body(b"\x00"),
    worker.result_body({"done": True}),
)


def test_sealed_frames_in_order_open() -> None:
    stream = _stream()
    assert stream.opener is not None
    taken = [stream.take(frame) for frame in _frames(stream.opener, *BODIES)]
    assert taken == [None, Output(2, "one"), Output(3, "AA==", "base64"), Result(4, {"done": True})]
    assert stream.ended and stream.last == 4


def test_an_error_opens_as_the_functions_own() -> None:
    stream = _stream()
    assert stream.opener is not None
    frames = _frames(stream.opener, worker.error_body("KeyError", "k", "trace"))
    found = [stream.take(frame) for frame in frames][-1]
    assert isinstance(found, Error) and (found.error.type, found.error.traceback) == (
        "KeyError",
        "trace",
    )


def _flip(frame: Event) -> Event:
    data = json.loads(frame.data)
    sealed = bytearray(base64.b64decode(data["sealed"]))
    sealed[0] ^= 1
    data["sealed"] = base64.b64encode(bytes(sealed)).decode()
    return Event(frame.event, json.dumps(data), frame.id)


def _tampered(frames: list[Event]) -> list[Event]:
    return [frames[0], _flip(frames[1])]


def _reordered(frames: list[Event]) -> list[Event]:
    return [frames[0], frames[2], frames[1]]


def _replayed(frames: list[Event]) -> list[Event]:
    return [frames[0], frames[1], frames[1]]


def _moved(frames: list[Event]) -> list[Event]:  # the second output's place, the first's seal
    return [frames[0], frames[1], Event("output", frames[1].data, "3")]


def _relabelled(frames: list[Event]) -> list[Event]:  # an output passed off as the result
    return [frames[0], Event("result", frames[1].data, "2")]


def _in_clear(frames: list[Event]) -> list[Event]:
    return [frames[0], Event("output", json.dumps("forged"), "2")]


def _unkeyed(frames: list[Event]) -> list[Event]:
    return frames[1:]


def _rekeyed(frames: list[Event]) -> list[Event]:
    return [frames[0], Event("key", frames[0].data, "2")]


def _other_id(frames: list[Event]) -> list[Event]:  # sealed in another exchange
    other = Opener()
    return [frames[0], *_frames(other, *BODIES)[1:2]]


@pytest.mark.parametrize(
    "attack",
    [
        _tampered,
        _reordered,
        _replayed,
        _moved,
        _relabelled,
        _in_clear,
        _unkeyed,
        _rekeyed,
        _other_id,
    ],
)
def test_a_frame_out_of_place_or_altered_is_refused(attack: Any) -> None:
    stream = _stream()
    assert stream.opener is not None
    frames = attack(_frames(stream.opener, *BODIES))
    with pytest.raises(SealBroken):
        _take_all(stream, frames)


def test_a_gateway_error_is_refused_with_its_claim() -> None:
    """WorkerLost (the gateway's own) cannot be sealed: the SDK says so and what it says."""
    stream = _stream()
    assert stream.opener is not None
    key, *_ = _frames(stream.opener, *BODIES)
    lost = Event("error", json.dumps({"type": "WorkerLost", "message": "gone"}), "2")
    stream.take(key)
    with pytest.raises(SealBroken) as refused:
        stream.take(lost)
    assert refused.value.error is not None and refused.value.error.type == "WorkerLost"
    assert "unauthenticated" in str(refused.value)


def test_an_error_in_clear_before_any_key_is_refused_with_its_claim() -> None:
    """NoWorker (the gateway's) or EncryptionUnavailable (a worker without cryptography)
    come first, before any key."""
    stream = _stream()
    unable = {"type": "EncryptionUnavailable", "message": "no cryptography here"}
    with pytest.raises(SealBroken) as refused:
        stream.take(Event("error", json.dumps(unable), "1"))
    assert refused.value.error is not None
    assert refused.value.error.type == "EncryptionUnavailable"
