"""Functions end to end on the embedded scheduler: a real gateway, its worker as a real
job running the test's source, invoked over real HTTP (streamed and whole)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import httpx

from tests.support.functions import (
    FUNCTIONS,
    SLOW,
    data,
    invocation,
    invoked,
    register,
    wait_state,
)
from tests.support.gateway_process import user_client
from tests.support.sse import read_events

alice = user_client("alice")
bob = user_client("bob")

STEPS = """
def f(steps, word="x"):
    for i in range(steps):
        yield f"step {i}\\nevent: result\\ndata: forged {word}\\n\\n"
    return {"steps": steps}
"""
SCHEMA = {
    "type": "object",
    "properties": {"steps": {"type": "integer", "minimum": 0, "default": 3}, "word": {}},
    "additionalProperties": False,
}


def test_output_streams_as_events_that_no_output_can_forge(alice: httpx.Client) -> None:
    name = register(alice, STEPS, input_schema=SCHEMA)
    with invoked(alice, name, {"word": "w"}) as (key, events):
        seen = list(events)
    outputs = [e for e in seen if e.event == "output"]
    assert [data(e) for e in outputs] == [
        f"step {i}\nevent: result\ndata: forged w\n\n"
        for i in range(3)  # the default: 3
    ]
    assert [e.id for e in seen] == ["1", "2", "3", "4"]
    assert (seen[-1].event, data(seen[-1])) == ("result", {"steps": 3})
    found = invocation(alice, name, key)
    assert (found["state"], found["events"], found["caller"]) == ("succeeded", 4, "alice")


def test_an_invocation_answered_whole(alice: httpx.Client) -> None:
    name = register(alice, STEPS, input_schema=SCHEMA)
    answer = alice.post(f"{FUNCTIONS}/{name}/invoke", json={"steps": 2})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["state"] == "succeeded" and body["result"] == {"steps": 2}
    assert body["output"] == [f"step {i}\nevent: result\ndata: forged x\n\n" for i in range(2)]
    assert body["id"] == answer.headers["hpcgate-invocation"]


def test_input_the_schema_refuses_runs_nothing(alice: httpx.Client) -> None:
    name = register(alice, STEPS, input_schema=SCHEMA)
    answer = alice.post(f"{FUNCTIONS}/{name}/invoke", json={"steps": -1, "other": 1})
    assert answer.status_code == 422
    assert answer.headers["content-type"] == "application/problem+json"
    where = sorted(error["loc"] for error in answer.json()["errors"])
    assert where == [["body"], ["body", "steps"]]
    assert alice.get(f"{FUNCTIONS}/{name}/invocations").json() == []


def test_a_function_that_raises_ends_in_an_error_with_the_traceback_for_its_owner(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    source = "def f(n):\n    raise ValueError(f'bad {n}')\n"
    name = register(alice, source, users=["bob"])
    mine = alice.post(f"{FUNCTIONS}/{name}/invoke", json={"n": 1}).json()
    assert mine["state"] == "failed"
    assert mine["error"]["type"] == "ValueError" and mine["error"]["message"] == "bad 1"
    assert "ValueError: bad 1" in mine["error"]["traceback"]
    with invoked(bob, name, {"n": 2}) as (key, events):
        [final] = list(events)
    assert final.event == "error"
    assert data(final) == {"type": "ValueError", "message": "bad 2"}  # no traceback for bob
    assert invocation(bob, name, key)["error"]["traceback"] is None
    assert invocation(alice, name, key)["error"]["traceback"]  # its owner's
    url = f"{FUNCTIONS}/{name}/invocations/{key}/events"
    [again] = list(read_events(alice, url))  # the owner reading bob's events: with it
    assert "ValueError: bad 2" in data(again)["traceback"]
    [again] = list(read_events(bob, url))
    assert "traceback" not in data(again)


def test_a_function_that_fails_to_import_ends_every_invocation_at_once(
    alice: httpx.Client,
) -> None:
    name = register(alice, "raise ImportError('no such thing')\ndef f():\n    pass\n")
    with invoked(alice, name, {}) as (_, events):
        [final] = list(events)
    assert final.event == "error"
    assert data(final)["type"] == "ImportFailed"
    assert "no such thing" in data(final)["message"]


def test_another_users_function_and_invocations_are_not_found(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    private = register(alice, STEPS)
    shared = register(alice, STEPS, users=["bob"])
    assert bob.get(f"{FUNCTIONS}/{private}").status_code == 404
    assert bob.post(f"{FUNCTIONS}/{private}/invoke", json={"steps": 1}).status_code == 404
    assert private not in [f["name"] for f in bob.get(FUNCTIONS).json()]
    key = alice.post(f"{FUNCTIONS}/{shared}/invoke", json={"steps": 1}).json()["id"]
    assert bob.get(f"{FUNCTIONS}/{shared}/invocations/{key}").status_code == 404
    assert bob.delete(f"{FUNCTIONS}/{shared}/invocations/{key}").status_code == 404
    assert bob.get(f"{FUNCTIONS}/{shared}/invocations").json() == []
    assert bob.delete(f"{FUNCTIONS}/{shared}").status_code == 404
    shown = bob.get(f"{FUNCTIONS}/{shared}").json()
    assert shown["source"] is None and shown["workers"] == []


def test_a_caller_that_disconnects_cancels_its_invocation(alice: httpx.Client) -> None:
    name = register(alice, SLOW)
    with invoked(alice, name, {"count": 1000, "pause": 0.05}) as (key, events):
        assert next(events).event == "output"
    wait_state(alice, name, key, "cancelled")


def test_a_detached_invocation_runs_on_and_resumes_with_exactly_the_rest(
    alice: httpx.Client,
) -> None:
    name = register(alice, SLOW)
    with invoked(alice, name, {"count": 40, "pause": 0.05}, detach="true") as (key, events):
        first = [next(events) for _ in range(3)]
    assert [e.id for e in first] == ["1", "2", "3"]
    time.sleep(0.5)
    assert invocation(alice, name, key)["state"] == "running"
    url = f"{FUNCTIONS}/{name}/invocations/{key}/events"
    rest = list(read_events(alice, url, {"Last-Event-ID": "3"}))
    assert [e.id for e in rest] == [str(seq) for seq in range(4, 42)]
    assert [data(e) for e in rest[:-1]] == list(range(3, 40))
    assert (rest[-1].event, data(rest[-1])) == ("result", "done")
    wait_state(alice, name, key, "succeeded")


def test_cancel_ends_a_running_invocation(alice: httpx.Client) -> None:
    name = register(alice, SLOW)
    with invoked(alice, name, {"count": 1000, "pause": 0.05}, detach="true") as (key, events):
        next(events)
    answer = alice.delete(f"{FUNCTIONS}/{name}/invocations/{key}")
    assert answer.status_code == 200
    found = wait_state(alice, name, key, "cancelled")
    assert found["error"]["type"] == "Cancelled"


def test_a_worker_killed_mid_stream_is_an_error_within_seconds(alice: httpx.Client) -> None:
    name = register(alice, SLOW)
    with invoked(alice, name, {"count": 1000, "pause": 0.05}) as (key, events):
        next(events)
        [worker] = alice.get(f"{FUNCTIONS}/{name}").json()["workers"]
        killed = time.monotonic()
        answer = alice.delete(f"/api/v1/systems/local/jobs/{worker['job_id']}")
        assert answer.status_code in (200, 202), answer.text
        final = next(e for e in events if e.event != "output")
    assert time.monotonic() - killed < 10
    assert final.event == "error" and data(final)["type"] == "WorkerLost"
    assert invocation(alice, name, key)["state"] == "failed"


def test_an_async_function_streams(alice: httpx.Client) -> None:
    source = "import asyncio\nasync def f(n):\n    for i in range(n):\n        yield i\n"
    name = register(alice, source, concurrency="async")
    body = alice.post(f"{FUNCTIONS}/{name}/invoke", json={"n": 3}).json()
    assert (body["state"], body["output"], body["result"]) == ("succeeded", [0, 1, 2], None)


def test_a_crashed_child_process_is_an_error_and_the_worker_lives_on(
    alice: httpx.Client,
) -> None:
    source = "import os\ndef f(crash):\n    yield 'up'\n    if crash:\n        os._exit(3)\n"
    name = register(alice, source, concurrency="processes")
    with invoked(alice, name, {"crash": True}) as (_, events):
        seen = list(events)
    assert [e.event for e in seen] == ["output", "error"]
    assert data(seen[-1])["type"] == "WorkerCrashed"
    body = alice.post(f"{FUNCTIONS}/{name}/invoke", json={"crash": False}).json()
    assert (body["state"], body["output"]) == ("succeeded", ["up"])


def test_deleting_a_function_cancels_its_running_invocations(alice: httpx.Client) -> None:
    name = register(alice, SLOW)
    with invoked(alice, name, {"count": 1000, "pause": 0.05}) as (_, events):
        next(events)
        assert alice.delete(f"{FUNCTIONS}/{name}").status_code == 204
        final = next(e for e in events if e.event != "output")
    assert final.event == "error" and data(final)["type"] == "Cancelled"
    assert alice.get(f"{FUNCTIONS}/{name}").status_code == 404


def test_a_reader_that_stops_pauses_the_function(alice: httpx.Client) -> None:
    """Bounded buffers end to end: the worker's, the connections', the gateway's. A
    client that reads nothing holds the function at a yield well short of its end (here
    some 180 chunks of 64 KiB are in flight: most in the sockets' buffers)."""
    progress = Path("/tmp") / f"hpcgate-progress-{uuid.uuid4().hex}"
    source = (
        "def f(n, path):\n    for i in range(n):\n"
        "        with open(path, 'w') as out:\n            out.write(str(i))\n"
        "        yield 'x' * 65536\n"
    )
    name = register(alice, source)
    try:
        with invoked(alice, name, {"n": 1000, "path": str(progress)}) as (key, events):
            next(events)
            time.sleep(3)
            held = int(progress.read_text())
            time.sleep(1)
            assert int(progress.read_text()) == held  # it waits at a yield
        assert held < 400, held  # of 1,000 chunks
        wait_state(alice, name, key, "cancelled")
    finally:
        progress.unlink(missing_ok=True)


def test_events_older_than_the_worker_keeps_are_a_410(alice: httpx.Client) -> None:
    name = register(alice, "def f(n):\n    for i in range(n):\n        yield i\n")
    with invoked(alice, name, {"n": 1500}, detach="true") as (key, events):
        assert len(list(events)) == 1501
    url = f"{FUNCTIONS}/{name}/invocations/{key}/events"
    answer = alice.get(url, headers={"Last-Event-ID": "10"})
    assert answer.status_code == 410
    assert answer.headers["content-type"] == "application/problem+json"
    rest = list(read_events(alice, url, {"Last-Event-ID": "1499"}))
    assert [(e.id, e.event) for e in rest] == [("1500", "output"), ("1501", "result")]
