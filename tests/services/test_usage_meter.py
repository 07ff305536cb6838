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


# As a backend asked for usage sends it (vLLM, OpenAI): a null usage in every chunk.
NULLS = CHUNK.replace(b'"usage":null', b'"usage": null') + CHUNK
NULLS_STREAM = NULLS * 2 + USAGE + DONE


@pytest.mark.parametrize("drop", [False, True])
def test_chunks_of_whole_events_pass_as_they_are_and_the_usage_is_still_read(drop: bool) -> None:
    """Cut at event ends (as backends write), where whole chunks pass without being cut
    into events: the usage event is still read (and dropped when the gateway asked)."""
    meter = StreamMeter(drop_usage_only=drop)
    chunks = [CHUNK, NULLS, USAGE, DONE, CHUNK + USAGE, CHUNK]
    passed = [meter.feed(chunk) for chunk in chunks]
    assert meter.finish() == b""
    assert meter.tokens == Tokens(7, 3)
    if drop:
        assert passed == [CHUNK, NULLS, b"", DONE, CHUNK, CHUNK]
    else:
        assert passed == chunks


@pytest.mark.parametrize("size", [3, 61, 62, 63, len(NULLS_STREAM)])
def test_null_usages_are_no_usage_at_any_cut(size: int) -> None:
    meter = StreamMeter(drop_usage_only=True)
    assert _run(meter, _cuts(NULLS_STREAM, size)) == NULLS * 2 + DONE
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


ASKED = b'"stream_options":{"include_usage":true},'


@pytest.mark.parametrize(
    "body",
    [
        b'{"model": "m",  "stream": true, "messages": [{"content": "\\u00e9 \\"x\\""}]}',
        b' \r\n\t{"stream":true,"model":"m","n":{"stream_options":{"include_usage":false}}}',
        '{"model": "mé", "stream": true}'.encode(),
    ],
)
def test_the_usage_is_asked_for_in_the_body_as_the_caller_sent_it(body: bytes) -> None:
    """Without stream_options at its top, the member is put in; the rest is the caller's
    bytes, unchanged (a nested stream_options is not the request's)."""
    call = read_call(body)
    assert call.asked_usage
    brace = body.index(b"{") + 1
    assert call.body == body[:brace] + ASKED + body[brace:]
    assert json.loads(call.body) == {**json.loads(body), "stream_options": {"include_usage": True}}


@pytest.mark.parametrize(
    ("body", "options"),
    [
        (b'{"model": "m", "stream": true, "stream_options": null}', {}),
        (b'{"model":"m","stream":true,"stream_options":5,"stream_options":{"x":1}}', {"x": 1}),
        (b'{"model":"m","stream":true,"stream\\u005foptions":{"x":1}}', {"x": 1}),
        ('{"model": "m", "stream": true}'.encode("utf-16-le"), {}),
        ('{"model": "m", "stream": true}'.encode("utf-8-sig"), {}),
    ],
)
def test_a_body_that_names_stream_options_or_is_not_plain_utf8_is_written_anew(
    body: bytes, options: dict[str, object]
) -> None:
    """Its last stream_options (as the parse reads it), with the usage asked for, and no
    other: one member of that name, in UTF-8."""
    call = read_call(body)
    assert call.asked_usage
    assert call.body.count(b"stream_options") == 1
    document = json.loads(call.body.decode("utf-8"))
    assert document["stream_options"] == {**options, "include_usage": True}
    assert document["model"] == "m"


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
