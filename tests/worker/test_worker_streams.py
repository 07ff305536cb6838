"""The event stream's guarantees on a real worker: bounded buffers that pause the function
(backpressure, never loss), the retained tail and its 410, a new reader replacing the old
one, and finished invocations dropped after their time but never run again."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.worker.support import WorkerProcess, events, invoke, running_worker, spec_for

SOURCE = """
import os, time

def produce(path, n=1_000_000, size=10):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = "x" * size
    for i in range(n):
        os.pwrite(fd, b"%12d" % (i + 1), 0)
        yield chunk
    return n

async def aproduce(path, n=1_000_000, size=10):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    chunk = "x" * size
    for i in range(n):
        os.pwrite(fd, b"%12d" % (i + 1), 0)
        yield chunk

def ticks(n=1_000_000, pause=0.005):
    for i in range(n):
        yield i
        time.sleep(pause)
    return "done"

def count(n, size=1):
    for i in range(n):
        yield "y" * size
    return n
"""


def produced(path: Path) -> int:
    text = path.read_text() if path.exists() else ""
    return int(text) if text.strip() else 0


def settled(path: Path) -> int:
    """The producer's count once it has stopped moving (it waits on a full buffer)."""
    last, since = -1, time.monotonic()
    end = time.monotonic() + 20
    while time.monotonic() < end:
        now = produced(path)
        if now != last:
            last, since = now, time.monotonic()
        elif now and time.monotonic() - since > 0.5:
            return now
        time.sleep(0.05)
    raise AssertionError(f"the producer never settled: {last}")


@pytest.mark.parametrize(
    ("mode", "call", "size", "bound"),
    [
        ("threads", "produce", 10, 256 + 1),  # 256 events held, one yield waiting
        ("threads", "produce", 64 * 1024, 16 + 1),  # 1 MiB held
        ("async", "aproduce", 10, 256 + 1),
        ("async", "produce", 10, 256 + 1),  # a plain generator in a thread
        # and a pipe's worth, and one read of it (256 KiB) waiting in the worker, of 39-byte frames
        ("processes", "produce", 10, 256 + (64 + 256) * 1024 // 39 + 1),
    ],
)
def test_with_no_reader_the_function_waits_once_the_buffer_is_full(
    tmp_path: Path, mode: str, call: str, size: int, bound: int
) -> None:
    counter = tmp_path / "count"
    spec = spec_for(SOURCE, call, concurrency=mode)
    with running_worker(tmp_path, spec) as run, run.client() as client:
        body = {"id": "bp", "input": {"path": str(counter), "size": size}}
        assert client.post("/invocations", json=body).status_code == 201
        stopped_at = settled(counter)
        assert (256 if size == 10 else 16) <= stopped_at <= bound
        with client.stream("GET", "/invocations/bp/events") as stream:
            lines = stream.iter_lines()
            first = [json.loads(next(lines)) for _ in range(3 * bound)]
        assert [event["seq"] for event in first] == list(range(1, 3 * bound + 1))
        assert produced(counter) > stopped_at  # reading let it go on
        client.delete("/invocations/bp")


def test_a_slow_reader_slows_the_function_down(tmp_path: Path) -> None:
    counter = tmp_path / "count"
    with running_worker(tmp_path, spec_for(SOURCE, "produce")) as run, run.client() as client:
        body = {"id": "slow", "input": {"path": str(counter), "size": 1000}}
        client.post("/invocations", json=body)
        with _raw_stream(run, "slow") as sock:
            read = _read_events_slowly(sock, 300)
            ahead = produced(counter) - read
        client.delete("/invocations/slow")
    # 256 held, the rest in the two sockets' kernel buffers (at most a few MiB of 1 KB events)
    assert 0 < ahead < 256 + 6000, ahead
    assert produced(counter) < 100_000


def test_every_event_arrives_once_in_order_through_backpressure(tmp_path: Path) -> None:
    with running_worker(tmp_path, spec_for(SOURCE, "count")) as run, run.client() as client:
        got = invoke(client, "all", n=20_000, size=5)
    assert [event["seq"] for event in got] == list(range(1, 20_002))
    assert got[-1] == {"seq": 20_001, "type": "result", "data": 20_000}


def test_a_reader_that_comes_back_gets_the_tail_or_410(tmp_path: Path) -> None:
    with running_worker(tmp_path, spec_for(SOURCE, "count")) as run, run.client() as client:
        assert len(invoke(client, "t1", n=2000)) == 2001
        old = client.get("/invocations/t1/events", params={"after": 976})
        assert old.status_code == 410
        assert old.json() == {"oldest": 978}  # the last 1,024 events are kept
        rest = events(client, "t1", after=977)
        assert [event["seq"] for event in rest] == list(range(978, 2002))
        invoke(client, "t2", n=100, size=100_000)
        oldest = client.get("/invocations/t2/events").json()["oldest"]
        assert 50 < oldest < 70  # 4 MiB of 100 kB events
        assert events(client, "t2", after=oldest - 1)[0]["seq"] == oldest


def test_a_new_reader_replaces_the_old_one(tmp_path: Path) -> None:
    with running_worker(tmp_path, spec_for(SOURCE, "ticks")) as run, run.client() as client:
        client.post("/invocations", json={"id": "r1", "input": {}})
        with _raw_stream(run, "r1") as old:
            seen = b""
            while seen.count(b"\n") < 8:  # the response head's lines, then events
                seen += old.recv(100)
            with client.stream("GET", "/invocations/r1/events", params={"after": 2}) as new:
                lines = new.iter_lines()
                assert [json.loads(next(lines))["seq"] for _ in range(5)] == [3, 4, 5, 6, 7]
                assert _closed(old)
                client.delete("/invocations/r1")
                rest = [json.loads(line) for line in lines if line]
        assert rest[-1]["data"]["type"] == "Cancelled"
        assert [event["seq"] for event in rest] == list(range(8, 8 + len(rest)))


def _closed(sock: socket.socket) -> bool:
    """Whether the worker closed this connection (after any data still in flight)."""
    sock.settimeout(5)
    end = time.monotonic() + 5
    try:
        while sock.recv(65536):
            if time.monotonic() > end:
                return False
    except ConnectionResetError:
        pass
    return True


def test_a_reader_that_leaves_does_not_cancel(tmp_path: Path) -> None:
    spec = spec_for(SOURCE, "ticks")
    with running_worker(tmp_path, spec) as run, run.client() as client:
        client.post("/invocations", json={"id": "l1", "input": {"n": 40, "pause": 0.01}})
        with _raw_stream(run, "l1") as sock:
            sock.recv(100)
        time.sleep(1)
        got = events(client, "l1")
    assert got[-1] == {"seq": 41, "type": "result", "data": "done"}


def test_finished_invocations_are_dropped_after_their_time_but_never_rerun(
    tmp_path: Path,
) -> None:
    spec = spec_for(SOURCE, "count")
    env = {"HPCGATE_WORKER_RETAIN_SECONDS": "0.5"}
    with running_worker(tmp_path, spec, env) as run, run.client() as client:
        invoke(client, "d1", n=3)
        time.sleep(0.2)
        assert len(events(client, "d1")) == 4  # a read keeps it a while longer
        time.sleep(1.5)
        gone = client.get("/invocations/d1/events")
        assert gone.status_code == 410
        assert gone.json() == {"oldest": 5}
        assert client.get("/invocations/d1").json() == {
            "id": "d1",
            "state": "succeeded",
            "events": 4,
        }
        again = client.post("/invocations", json={"id": "d1", "input": {"n": 3}})
        assert again.status_code == 200
        assert again.json() == {"id": "d1", "state": "succeeded"}


@contextmanager
def _raw_stream(run: WorkerProcess, ident: str) -> Iterator[socket.socket]:
    """An events request on a raw socket with a small receive buffer."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
        sock.settimeout(30)
        sock.connect(("127.0.0.1", run.port))
        sock.sendall(f"GET /invocations/{ident}/events HTTP/1.1\r\nHost: w\r\n\r\n".encode())
        yield sock


def _read_events_slowly(sock: socket.socket, count: int) -> int:
    """Read about ``count`` events, a little at a time; how many newlines were read."""
    seen = 0
    while seen < count:
        seen += sock.recv(2048).count(b"\n")
        time.sleep(0.002)
    return seen
