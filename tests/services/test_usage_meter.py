"""The usage meters on recorded answers (no I/O): usage read from any cut of a stream into
chunks, the stream passed on unchanged, or without the usage-only event the gateway asked
for, and counts a backend could send to break a total taken as unknown."""

from __future__ import annotations

import json

import pytest

from hpcgate.model.errors import BadRequest
from hpcgate.model.usage import TOKENS_MAX, Tokens
from hpcgate.services.openai import read_call
from hpcgate.services.usage import StreamMeter, WholeMeter

CHUNK = b'data: {"choices":[{"delta":{"content":"hi"}}],"usage":null}\n\n'
USAGE = b'data: {"choices":[],"usage":{"prompt_tokens":7,"completion_tokens":3}}\n\n'
DONE = b"data: [DONE]\n\n"
STREAM = CHUNK * 3 + USAGE + DONE


def _cuts(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _run(meter: StreamMeter, chunks: list[bytes]) -> bytes:
    return b"".join(meter.feed(chunk) for chunk in chunks) + meter.finish()


@pytest.mark.parametrize("size", [1, 2, 7, 40, len(STREAM)])
def test_a_stream_passes_unchanged_and_its_usage_is_read(size: int) -> None:
    meter = StreamMeter(drop_usage_only=False)
    chunks = _cuts(STREAM, size)
    assert [meter.feed(chunk) for chunk in chunks] == chunks  # each chunk as it came
    assert meter.finish() == b""
    assert meter.tokens == Tokens(7, 3)


@pytest.mark.parametrize("size", [1, 3, 40, len(STREAM)])
def test_the_usage_event_asked_for_by_the_gateway_is_dropped(size: int) -> None:
    meter = StreamMeter(drop_usage_only=True)
    assert _run(meter, _cuts(STREAM, size)) == CHUNK * 3 + DONE
    assert meter.tokens == Tokens(7, 3)


def test_crlf_events_and_an_unterminated_tail_are_kept() -> None:
    stream = CHUNK.replace(b"\n", b"\r\n") + USAGE.replace(b"\n", b"\r\n") + b"data: [DONE]"
    meter = StreamMeter(drop_usage_only=True)
    assert _run(meter, _cuts(stream, 5)) == CHUNK.replace(b"\n", b"\r\n") + b"data: [DONE]"
    assert meter.tokens == Tokens(7, 3)


@pytest.mark.parametrize("count", [-1, TOKENS_MAX + 1, 1.5, "7", True, None, 10**40])
def test_a_count_out_of_range_is_unknown(count: object) -> None:
    meter = WholeMeter()
    body = json.dumps({"usage": {"prompt_tokens": count, "completion_tokens": 2}}).encode()
    meter.feed(body)
    meter.finish()
    assert meter.tokens == Tokens(0, 2)


def test_a_whole_answer_that_is_not_json_has_no_usage() -> None:
    meter = WholeMeter()
    assert meter.feed(b"<html>") == b"<html>"
    meter.finish()
    assert meter.tokens is None


def test_a_stream_that_does_not_ask_for_usage_is_made_to() -> None:
    call = read_call(b'{"model": "m", "stream": true, "stream_options": {"x": 1}}')
    assert call.asked_usage
    assert json.loads(call.body)["stream_options"] == {"x": 1, "include_usage": True}
    asked = b'{"model": "m", "stream": true, "stream_options": {"include_usage": true}}'
    assert read_call(asked).body == asked and not read_call(asked).asked_usage
    whole = b'{"model": "m"}'
    assert read_call(whole).body == whole


@pytest.mark.parametrize(
    "body", [b"{not json", b"[1]", b'"x"', b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe"]
)
def test_a_body_that_is_not_a_json_object_is_a_bad_request(body: bytes) -> None:
    with pytest.raises(BadRequest):
        read_call(body)


@pytest.mark.parametrize("body", [b"{}", b'{"model": ""}', b'{"model": 5}', b'{"model": null}'])
def test_a_body_without_a_model_is_a_bad_request_about_it(body: bytes) -> None:
    with pytest.raises(BadRequest) as raised:
        read_call(body)
    assert raised.value.extra["param"] == "model"
