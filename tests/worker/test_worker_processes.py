"""The processes mode: each invocation in a forked child of the worker, its events sent
back over a pipe; a child that dies without a result ends its invocation ``WorkerCrashed``
and the worker serves on."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.worker.support import WorkerProcess, events, invoke, running_worker, spec_for

SOURCE = """
import asyncio, os, signal, time

def run(how="return", n=3):
    for i in range(n):
        yield {"i": i, "pid": os.getpid()}
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "exit":
        os._exit(3)
    if how == "raise":
        raise RuntimeError("in the child")
    if how == "ignore-term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        open(str(n) + ".pid", "w").write(str(os.getpid()))
        while True:
            time.sleep(0.05)
    if how == "sleep":
        open(str(n) + ".pid", "w").write(str(os.getpid()))
        time.sleep(60)
    return {"pid": os.getpid()}

async def arun(n=2):
    for i in range(n):
        await asyncio.sleep(0)
        yield i

async def acoro(x):
    await asyncio.sleep(0.01)
    return x + 1
"""


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    spec = spec_for(SOURCE, "run", concurrency="processes", max_concurrency=4)
    with running_worker(tmp_path_factory.mktemp("p"), spec) as started:
        yield started


@pytest.fixture
def client(worker: WorkerProcess) -> Iterator[httpx.Client]:
    with worker.client() as opened:
        yield opened


def test_each_invocation_runs_in_a_child_of_its_own(
    client: httpx.Client, worker: WorkerProcess
) -> None:
    got = invoke(client, "p1", n=3)
    assert [event["type"] for event in got] == ["output"] * 3 + ["result"]
    pid = got[-1]["data"]["pid"]
    assert pid != worker.process.pid
    assert {event["data"]["pid"] for event in got[:3]} == {pid}
    assert invoke(client, "p2", n=0)[-1]["data"]["pid"] != pid


@pytest.mark.parametrize(
    ("how", "said"),
    [("sigkill", "killed by signal 9 (SIGKILL)"), ("exit", "exited with code 3")],
)
def test_a_child_that_dies_ends_worker_crashed_and_the_worker_lives_on(
    client: httpx.Client, how: str, said: str
) -> None:
    started = time.monotonic()
    got = invoke(client, f"crash-{how}", how=how, n=2)
    assert time.monotonic() - started < 5
    assert [event["type"] for event in got] == ["output", "output", "error"]
    assert got[-1]["data"]["type"] == "WorkerCrashed"
    assert said in got[-1]["data"]["message"]
    assert client.get(f"/invocations/crash-{how}").json()["state"] == "failed"
    health = client.get("/health").json()
    assert health["running"] == 0
    assert invoke(client, f"after-{how}", n=1)[-1]["type"] == "result"


def test_an_exception_in_the_child_is_its_error(client: httpx.Client) -> None:
    final = invoke(client, "raise-1", how="raise", n=0)[-1]
    assert final["data"]["type"] == "RuntimeError"
    assert final["data"]["message"] == "in the child"
    assert "in run" in final["data"]["traceback"]


def test_cancel_terminates_the_child(client: httpx.Client, worker: WorkerProcess) -> None:
    reply = client.post("/invocations", json={"id": "term-1", "input": {"how": "sleep", "n": 1}})
    assert reply.status_code == 201
    pid = _child_pid(worker, "1.pid")
    assert client.delete("/invocations/term-1").json()["state"] == "cancelled"
    assert events(client, "term-1")[-1]["data"]["type"] == "Cancelled"
    _wait_gone(pid, 5)
    assert client.get("/health").json()["running"] == 0


def test_a_child_that_ignores_sigterm_is_killed_two_seconds_later(
    client: httpx.Client, worker: WorkerProcess
) -> None:
    body = {"id": "term-2", "input": {"how": "ignore-term", "n": 2}}
    assert client.post("/invocations", json=body).status_code == 201
    pid = _child_pid(worker, "2.pid")
    started = time.monotonic()
    client.delete("/invocations/term-2")
    time.sleep(1)
    assert _alive(pid)
    _wait_gone(pid, 5)
    assert 1.5 < time.monotonic() - started < 5
    assert client.get("/invocations/term-2").json()["state"] == "cancelled"


def test_async_functions_run_in_the_child_too(tmp_path: Path) -> None:
    for call, arguments, last in [("arun", {"n": 2}, None), ("acoro", {"x": 1}, 2)]:
        spec = spec_for(SOURCE, call, concurrency="processes")
        with running_worker(tmp_path, spec) as run, run.client() as client:
            got = invoke(client, "a1", **arguments)
            assert got[-1] == {"seq": len(got), "type": "result", "data": last}


def test_the_worker_stopped_kills_its_children(tmp_path: Path) -> None:
    spec = spec_for(SOURCE, "run", concurrency="processes")
    with running_worker(tmp_path, spec) as run, run.client() as client:
        client.post("/invocations", json={"id": "k1", "input": {"how": "sleep", "n": 7}})
        pid = _child_pid(run, "7.pid")
        run.process.send_signal(signal.SIGTERM)
        run.process.wait(10)
    _wait_gone(pid, 5)


def _child_pid(worker: WorkerProcess, name: str) -> int:
    path = worker.log.parent / name
    end = time.monotonic() + 10
    while time.monotonic() < end:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.02)
    raise AssertionError("the child never started")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().split(")")[-1].split()[0] != "Z"


def _wait_gone(pid: int, timeout: float) -> None:
    end = time.monotonic() + timeout
    while _alive(pid):
        assert time.monotonic() < end, f"{pid} still runs"
        time.sleep(0.05)
