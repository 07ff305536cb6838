"""Cancelling an invocation (DELETE) in each concurrency mode: its final event is
``Cancelled`` at once, and the function stops where its mode can stop it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.worker.support import events, running_worker, spec_for

SOURCE = """
import asyncio, time

def forever(path):
    try:
        i = 0
        while True:
            i += 1
            yield i
            time.sleep(0.01)
    finally:
        with open(path, "w") as mark:
            mark.write("closed")

async def aforever(path):
    try:
        while True:
            yield "tick"
            await asyncio.sleep(0.01)
    finally:
        with open(path, "w") as mark:
            mark.write("closed")

def stuck(path):
    time.sleep(3)
    with open(path, "w") as mark:
        mark.write("returned")
    return "late"
"""


def wait_for(check: object, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if callable(check) and check():
            return
        time.sleep(0.02)
    raise AssertionError("not within the time")


def cancel_and_read(client: httpx.Client, ident: str, path: Path) -> list[dict[str, object]]:
    reply = client.post("/invocations", json={"id": ident, "input": {"path": str(path)}})
    assert reply.status_code == 201
    wait_for(lambda: client.get(f"/invocations/{ident}").json()["events"] >= 3)
    gone = client.delete(f"/invocations/{ident}")
    assert gone.status_code == 200
    assert gone.json() == {"id": ident, "state": "cancelled"}
    return events(client, ident)


@pytest.mark.parametrize(
    ("mode", "call"),
    [("threads", "forever"), ("async", "aforever"), ("async", "forever"), ("threads", "aforever")],
)
def test_a_cancelled_generator_ends_cancelled_and_is_closed(
    tmp_path: Path, mode: str, call: str
) -> None:
    mark = tmp_path / "mark"
    spec = spec_for(SOURCE, call, concurrency=mode)
    with running_worker(tmp_path, spec) as run, run.client() as client:
        got = cancel_and_read(client, "c1", mark)
        assert got[-1]["type"] == "error"
        assert got[-1]["data"]["type"] == "Cancelled"  # type: ignore[index]
        assert [event["seq"] for event in got] == list(range(1, len(got) + 1))
        wait_for(mark.exists)
        assert mark.read_text() == "closed"
        assert client.delete("/invocations/c1").json()["state"] == "cancelled"  # no change
        assert client.get("/health").json()["running"] == 0


def test_a_thread_stuck_computing_is_cancelled_at_once_but_runs_out(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    spec = spec_for(SOURCE, "stuck", max_concurrency=1)
    with running_worker(tmp_path, spec) as run, run.client() as client:
        client.post("/invocations", json={"id": "s1", "input": {"path": str(mark)}})
        client.post("/invocations", json={"id": "s2", "input": {"path": str(mark)}})
        started = time.monotonic()
        assert client.delete("/invocations/s1").json()["state"] == "cancelled"
        (final,) = events(client, "s1")
        assert time.monotonic() - started < 1.0
        assert final["data"]["type"] == "Cancelled"
        assert client.get("/invocations/s2").json()["state"] == "queued"  # the slot is held
        wait_for(lambda: client.get("/invocations/s2").json()["state"] == "running")
        assert client.delete("/invocations/s2").json()["state"] == "cancelled"
        assert client.get("/invocations/s1").json()["state"] == "cancelled"  # not "succeeded"


def test_a_queued_invocation_cancelled_never_runs(tmp_path: Path) -> None:
    mark = tmp_path / "mark"
    spec = spec_for(SOURCE, "stuck", max_concurrency=1)
    with running_worker(tmp_path, spec) as run, run.client() as client:
        client.post("/invocations", json={"id": "q1", "input": {"path": str(tmp_path / "x")}})
        client.post("/invocations", json={"id": "q2", "input": {"path": str(mark)}})
        assert client.get("/health").json()["queued"] == 1
        assert client.delete("/invocations/q2").json()["state"] == "cancelled"
        assert client.get("/health").json()["queued"] == 0
        wait_for(lambda: client.get("/invocations/q1").json()["state"] == "succeeded")
        time.sleep(0.5)
        assert client.get("/invocations/q2").json()["state"] == "cancelled"
    assert not mark.exists()
