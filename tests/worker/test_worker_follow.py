"""The worker's multiplexed connection (``GET /follow``, upgraded), spoken over a raw socket
as the gateway speaks it: the secret first, runs and follows of several invocations on one
connection, each held to its credit, a second reader taking an invocation over, and a
command it cannot read closing the connection."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.worker.support import WorkerProcess, running_worker, spec_for

SECRET = "follow-secret"
SOURCE = "def f(n):\n    for i in range(n):\n        yield i\n    return n\n"


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    spec = {**spec_for(SOURCE, "f"), "secret": SECRET}
    with running_worker(tmp_path_factory.mktemp("follow"), spec) as process:
        yield process


class Lines:
    """A connection's lines as they come."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def next(self) -> bytes:
        while b"\n" not in self.buffer:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buffer)
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def tagged(self) -> tuple[str, dict[str, Any]]:
        key, _, body = self.next().partition(b" ")
        return key.decode(), json.loads(body)

    def send(self, command: dict[str, Any]) -> None:
        self.sock.sendall(json.dumps(command).encode() + b"\n")


def _upgraded(worker: WorkerProcess, secret: str = SECRET) -> tuple[bytes, Lines]:
    sock = worker.connect()
    sock.sendall(
        b"GET /follow HTTP/1.1\r\nHost: w\r\nUpgrade: hpcgate-events\r\nConnection: Upgrade\r\n"
        b"X-Hpcgate-Worker-Secret: " + secret.encode() + b"\r\n\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        data = sock.recv(1)
        if not data:
            break
        head += data
    return head, Lines(sock)


def test_without_the_secret_there_is_no_upgrade(worker: WorkerProcess) -> None:
    head, lines = _upgraded(worker, "wrong")
    lines.sock.close()
    assert head.startswith(b"HTTP/1.1 401")


def test_runs_on_one_connection_each_get_their_events_in_order(worker: WorkerProcess) -> None:
    head, lines = _upgraded(worker)
    with lines.sock:
        assert head.startswith(b"HTTP/1.1 101")
        for key, n in (("a1", 3), ("b1", 2)):
            lines.send({"op": "run", "id": key, "input": {"n": n}, "credit": 1 << 20})
        seen: dict[str, list[dict[str, Any]]] = {"a1": [], "b1": []}
        while sum(len(v) for v in seen.values()) < 2 + 4 + 3:
            key, body = lines.tagged()
            seen[key].append(body)
        for key, n in (("a1", 3), ("b1", 2)):
            assert seen[key][0]["status"] == 201 and seen[key][0]["id"] == key
            events = seen[key][1:]
            assert [e["seq"] for e in events] == list(range(1, n + 2))
            assert [e["type"] for e in events] == ["output"] * n + ["result"]
        lines.send({"op": "run", "id": "a1", "input": {"n": 3}, "credit": 1 << 20})
        key, again = lines.tagged()  # the same id again: known, never run twice
        assert (key, again["status"]) == ("a1", 200)


def test_a_follow_gets_no_more_than_its_credit(worker: WorkerProcess) -> None:
    _, lines = _upgraded(worker)
    with lines.sock:
        lines.send({"op": "run", "id": "c1", "input": {"n": 50}, "credit": 1})
        assert lines.tagged()[1]["status"] == 201
        first = lines.tagged()
        assert first == ("c1", {"seq": 1, "type": "output", "data": 0})
        lines.sock.settimeout(1.0)
        with pytest.raises(TimeoutError):
            lines.next()  # no credit left: nothing more comes
        lines.sock.settimeout(30)
        lines.send({"op": "credit", "id": "c1", "bytes": 1 << 20})
        rest = [lines.tagged()[1] for _ in range(50)]
        assert [e["seq"] for e in rest] == list(range(2, 52))
        assert rest[-1] == {"seq": 51, "type": "result", "data": 50}


def test_another_reader_takes_a_follow_over_and_refusals_are_tagged(
    worker: WorkerProcess,
) -> None:
    _, first = _upgraded(worker)
    _, second = _upgraded(worker)
    with first.sock, second.sock:
        first.send({"op": "run", "id": "d1", "input": {"n": 5}, "credit": 1})
        assert first.tagged()[1]["status"] == 201
        assert first.tagged()[1]["seq"] == 1
        second.send({"op": "follow", "id": "d1", "after": 1, "credit": 1 << 20})
        assert first.tagged() == (
            "d1",
            {"status": 409, "error": "another reader took the events over"},
        )
        rest = [second.tagged()[1]["seq"] for _ in range(5)]
        assert rest == [2, 3, 4, 5, 6]
        second.send({"op": "follow", "id": "nobody", "after": 0, "credit": 10})
        assert second.tagged() == ("nobody", {"status": 404, "error": "no such invocation"})
        second.send({"op": "follow", "id": "d1", "after": 9, "credit": 10})
        assert second.tagged()[1]["status"] == 400


def test_a_command_it_cannot_read_closes_the_connection(worker: WorkerProcess) -> None:
    _, lines = _upgraded(worker)
    with lines.sock:
        lines.sock.sendall(b"not json\n")
        with pytest.raises(EOFError):
            lines.next()
    assert "a multiplexed connection closed" in worker.stderr()


def test_the_worker_serves_on_after_its_connections_close(tmp_path: Path) -> None:
    spec = {**spec_for(SOURCE, "f"), "secret": SECRET}
    with running_worker(tmp_path, spec) as process:
        _, lines = _upgraded(process)
        lines.send({"op": "run", "id": "e1", "input": {"n": 1000}, "credit": 10})
        lines.sock.close()  # mid-stream: the follow ends, the invocation runs on
        shown = {"X-Hpcgate-Worker-Secret": SECRET}
        with (
            process.client(headers=shown) as client,
            client.stream("GET", "/invocations/e1/events", params={"after": 0}) as reply,
        ):
            assert reply.status_code == 200
            seqs = [json.loads(line)["seq"] for line in reply.iter_lines() if line]
        assert seqs == list(range(1, 1002))
