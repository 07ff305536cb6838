"""End-to-end encrypted invocations through a real gateway and real worker jobs: the SDK
(``encrypt=True``: invoke, the decorator, the executor, the async client) gets the
function's own events; the gateway's answers, database and log hold none of them in clear;
a resumed stream opens the rest; an altered ciphertext and a worker that cannot encrypt
are refused."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hpcgate.client import AsyncClient, Client, FunctionFailed, Output, Result, SealBroken
from hpcgate.client._sealed import HEADER, Opener
from tests.support.functions import FUNCTIONS, register
from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.services import SYSTEM_PYTHON

alice = user_client("alice")

#: What the worker yields is made from the input there (the input itself is in clear):
#: these texts exist only on the worker and in the caller's process.
STEPS = """
def f(steps, word):
    for i in range(steps):
        yield f"{word[::-1]}-hidden-{i}"
    if word == "liaf":
        raise ValueError(f"{word[::-1]}-hidden-failure")
    return {"made": f"{word[::-1]}-hidden-result"}
"""
WORD = "yranac"  # the hidden texts start "canary-hidden"
HIDDEN = "canary-hidden"


@pytest.fixture
def hpc(gateway: GatewayProcess) -> Iterator[Client]:
    with Client(gateway.url, gateway.token("alice")) as client:
        yield client


def _gateway_holds(gateway: GatewayProcess, text: str) -> list[str]:
    """The gateway's files (its database, its log) that hold ``text``."""
    files = [*gateway.home.glob("hpcgate.db*"), gateway.home / "server.log"]
    return [str(f) for f in files if f.exists() and text.encode() in f.read_bytes()]


def add(a: int, b: int) -> int:
    return a + b


def test_the_sdk_invokes_encrypted_and_the_gateway_keeps_no_plaintext(
    gateway: GatewayProcess, hpc: Client, alice: httpx.Client
) -> None:
    name = register(alice, STEPS)
    events = list(hpc.functions.invoke(name, {"steps": 2, "word": WORD}, encrypt=True))
    assert events == [  # seq 1 was the worker's key
        Output(2, f"{HIDDEN}-0"),
        Output(3, f"{HIDDEN}-1"),
        Result(4, {"made": f"{HIDDEN}-result"}),
    ]
    with pytest.raises(FunctionFailed) as failed:
        hpc.functions.call(name, {"steps": 1, "word": "liaf"}, encrypt=True)
    assert (failed.value.type, failed.value.message) == ("ValueError", "fail-hidden-failure")
    assert failed.value.invocation is not None
    shown = hpc.functions.invocation(name, failed.value.invocation)
    assert shown.error is not None and shown.error.type == "Sealed"  # all the gateway knows
    with hpc.functions.executor("local", encrypt=True, python=SYSTEM_PYTHON) as run:
        assert run.submit(add, 2, b=3).result(timeout=120) == 5
    assert _gateway_holds(gateway, HIDDEN) == [] and _gateway_holds(gateway, "fail-hidden") == []


async def test_the_async_client_invokes_encrypted(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    name = register(alice, STEPS)
    async with AsyncClient(gateway.url, gateway.token("alice")) as hpc:
        found = [
            e async for e in hpc.functions.invoke(name, {"steps": 1, "word": WORD}, encrypt=True)
        ]
        assert found == [Output(2, f"{HIDDEN}-0"), Result(3, {"made": f"{HIDDEN}-result"})]
        assert await hpc.functions.call(name, {"steps": 0, "word": WORD}, encrypt=True) == {
            "made": f"{HIDDEN}-result"
        }


def _opened(opener: Opener, key: str, events: list[dict[str, Any]]) -> list[Any]:
    return [opener.open(key, e["seq"], e["type"], e["data"]) for e in events]


def test_the_whole_answer_carries_sealed_events_only(alice: httpx.Client) -> None:
    name = register(alice, STEPS)
    opener = Opener()
    answer = alice.post(
        f"{FUNCTIONS}/{name}/invoke",
        json={"steps": 2, "word": WORD},
        headers={HEADER: opener.public_key},
    )
    assert answer.status_code == 200, answer.text
    assert HIDDEN not in answer.text
    body = answer.json()
    assert (body["state"], body["output"], body["result"]) == ("succeeded", [], None)
    events = body["events"]
    assert _opened(opener, body["id"], events)[1:] == [
        {"type": "output", "data": f"{HIDDEN}-0"},
        {"type": "output", "data": f"{HIDDEN}-1"},
        {"type": "result", "data": {"made": f"{HIDDEN}-result"}},
    ]
    altered = json.loads(json.dumps(events))  # the stored ciphertext of the result, altered
    sealed = bytearray(base64.b64decode(altered[-1]["data"]["sealed"]))
    sealed[-1] ^= 0x80
    altered[-1]["data"]["sealed"] = base64.b64encode(bytes(sealed)).decode()
    again = Opener.__new__(Opener)  # the same caller, opening the answer a second time
    again.__dict__.update(opener.__dict__, last=0, _aead=None)
    with pytest.raises(SealBroken, match="authentication"):
        _opened(again, body["id"], altered)


def test_a_resumed_stream_opens_the_rest(alice: httpx.Client) -> None:
    name = register(alice, STEPS)
    opener = Opener()
    headers = {HEADER: opener.public_key, "Accept": "text/event-stream"}
    url = f"{FUNCTIONS}/{name}/invoke"
    value = {"steps": 4, "word": WORD}
    with alice.stream("POST", url, json=value, headers=headers, params={"detach": "true"}) as a:
        key = a.headers["hpcgate-invocation"]
        first = _sse(a.iter_lines(), 3)  # the key and two outputs, then the caller leaves
    rest_url = f"{FUNCTIONS}/{name}/invocations/{key}/events"
    with alice.stream("GET", rest_url, headers={"Last-Event-ID": "3"}) as b:
        rest = _sse(b.iter_lines(), 3)
    assert [e["seq"] for e in first + rest] == [1, 2, 3, 4, 5, 6]
    opened = _opened(opener, key, first + rest)
    assert [o["data"] for o in opened[1:5]] == [f"{HIDDEN}-{i}" for i in range(4)]
    assert opened[5] == {"type": "result", "data": {"made": f"{HIDDEN}-result"}}


def _sse(lines: Iterator[str], count: int) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    event: dict[str, Any] = {}
    for line in lines:
        if line.startswith(("id:", "event:", "data:")):
            field, _, value = line.partition(":")
            event[field] = value.strip()
        elif not line and "data" in event:
            kind, data = event["event"], json.loads(event["data"])
            found.append({"seq": int(event["id"]), "type": kind, "data": data})
            event = {}
            if len(found) == count:
                break
    return found


def test_a_worker_that_cannot_encrypt_runs_nothing(
    gateway: GatewayProcess, hpc: Client, alice: httpx.Client
) -> None:
    """A worker on a Python without ``cryptography`` ends the invocation at once, unsealed
    and unrun; the SDK refuses it as unauthenticated and says why."""
    python = gateway.home / f"python-{uuid.uuid4().hex[:6]}"
    python.write_text(f'#!/bin/sh\nexec {SYSTEM_PYTHON} -S "$@"\n')  # no site packages
    python.chmod(0o755)
    name = register(alice, STEPS, python=str(python))
    with pytest.raises(SealBroken) as refused:
        hpc.functions.call(name, {"steps": 1, "word": WORD}, encrypt=True)
    assert refused.value.error is not None
    assert refused.value.error.type == "EncryptionUnavailable"
    assert "cryptography" in refused.value.error.message
    assert hpc.functions.call(name, {"steps": 0, "word": WORD}) == {"made": f"{HIDDEN}-result"}


def test_a_malformed_key_header_is_a_422_and_runs_nothing(alice: httpx.Client) -> None:
    name = register(alice, STEPS)
    answer = alice.post(
        f"{FUNCTIONS}/{name}/invoke", json={"steps": 0, "word": "x"}, headers={HEADER: "short"}
    )
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    assert alice.get(f"{FUNCTIONS}/{name}/invocations").json() == []
