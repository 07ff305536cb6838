"""The worker's HTTP edge against bad and hostile clients: malformed requests, oversized
heads and bodies, too many connections or queued invocations, and the pool's secret. Each
gets a clear 4xx/5xx JSON answer and the worker goes on serving everyone else."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.worker.support import WorkerProcess, events, invoke, running_worker, spec_for

SOURCE = """
import time

def ticks(n=1_000_000, pause=0.01):
    for i in range(n):
        yield i
        time.sleep(pause)

def wait(seconds=60):
    time.sleep(seconds)
"""


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    spec = spec_for(SOURCE, "ticks", max_concurrency=2)
    with running_worker(tmp_path_factory.mktemp("h"), spec) as started:
        yield started


@pytest.fixture(scope="module")
def watched(worker: WorkerProcess) -> Iterator[Iterator[str]]:
    """A stream that stays open through every test here: the others must not disturb it."""
    with worker.client() as client:
        client.post("/invocations", json={"id": "watched", "input": {}})
        with client.stream("GET", "/invocations/watched/events") as stream:
            yield stream.iter_lines()


def exchange(worker: WorkerProcess, raw: bytes) -> tuple[int, dict[str, object], bool]:
    """Send raw bytes, read one answer: its status, JSON body and whether it said close."""
    with worker.connect() as sock:
        sock.sendall(raw)
        data = b""
        while b"\r\n\r\n" not in data or len(data) < _length(data):
            more = sock.recv(65536)
            if not more:
                break
            data += more
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    return status, json.loads(body), b"connection: close" in head.lower()


def _length(data: bytes) -> int:
    head, _, _ = data.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            return len(head) + 4 + int(value)
    return len(data) + 1


@pytest.mark.parametrize(
    ("raw", "status", "closed"),
    [
        (b"GARBAGE\r\n\r\n", 400, True),
        (b"GET /health\r\n\r\n", 400, True),
        (b"GET health HTTP/1.1\r\n\r\n", 400, True),
        (b"GET /health HTTP/2.0\r\n\r\n", 400, True),
        (b"GET  /health HTTP/1.1\r\n\r\n", 400, True),
        (b"G(T /health HTTP/1.1\r\n\r\n", 400, True),
        (b"GET /h\xc3\xa9alth HTTP/1.1\r\n\r\n", 400, True),
        (b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n", 400, True),
        (b"GET /health HTTP/1.1\r\nbad name: x\r\n\r\n", 400, True),
        (b"POST /invocations HTTP/1.1\r\nContent-Length: -1\r\n\r\n", 400, True),
        (b"POST /invocations HTTP/1.1\r\nContent-Length: 1e3\r\n\r\n", 400, True),
        (
            b"POST /invocations HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
            400,
            True,
        ),
        (b"POST /invocations HTTP/1.1\r\nContent-Length: 16777217\r\n\r\n", 413, True),
        (b"POST /invocations HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411, True),
        (b"GET /invocations/watched/events?after=x HTTP/1.1\r\n\r\n", 400, False),
        (b"GET /invocations/watched/events?after=-1 HTTP/1.1\r\n\r\n", 400, False),
        (b"GET /invocations/watched/events?after=1" + b"0" * 20 + b" HTTP/1.1\r\n\r\n", 400, False),
        (b"POST /invocations HTTP/1.1\r\nContent-Length: 5\r\n\r\n[[[[[", 400, False),
        (b"POST /invocations HTTP/1.1\r\nContent-Length: 4\r\n\r\n\xff\xfe{}", 400, False),
        (b"DELETE /health HTTP/1.1\r\n\r\n", 405, False),
    ],
)
def test_a_bad_request_gets_a_json_error_and_disturbs_no_one(
    worker: WorkerProcess, watched: Iterator[str], raw: bytes, status: int, closed: bool
) -> None:
    """A request that could not be read whole closes its connection; one that was read
    leaves it open for the next."""
    before = json.loads(next(watched))["seq"]
    got, body, close = exchange(worker, raw)
    assert got == status
    assert isinstance(body.get("error"), str)
    assert close == closed
    assert json.loads(next(watched))["seq"] == before + 1


def test_a_deeply_nested_body_is_refused(worker: WorkerProcess) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    raw = b"POST /invocations HTTP/1.1\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)
    assert exchange(worker, raw)[0] == 400


def test_a_head_over_64_kib_is_refused(worker: WorkerProcess, watched: Iterator[str]) -> None:
    raw = b"GET /health HTTP/1.1\r\nx-big: " + b"a" * 70_000 + b"\r\n\r\n"
    status, body, close = exchange(worker, raw)
    assert (status, close) == (431, True)
    assert "64" in str(body["error"]) or "65536" in str(body["error"])
    next(watched)


def test_a_body_over_16_mib_is_refused_unread(worker: WorkerProcess) -> None:
    with worker.connect() as sock:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 ")


def test_keep_alive_serves_many_requests_on_one_connection(worker: WorkerProcess) -> None:
    with worker.connect() as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\n\r\n" * 3 + b"GET /nowhere HTTP/1.1\r\n\r\n")
        data = b""
        while data.count(b"HTTP/1.1 ") < 4:
            data += sock.recv(65536)
    assert data.count(b"HTTP/1.1 200 OK") == 3
    assert b"HTTP/1.1 404 " in data


def test_at_most_10_000_connections(worker: WorkerProcess, watched: Iterator[str]) -> None:
    opened: list[socket.socket] = []
    try:
        for _ in range(9_990):  # the watched stream and the module's clients hold a few
            opened.append(socket.create_connection(("127.0.0.1", worker.port)))
        for _ in range(20):  # each one more, asking for /health, until one is refused
            sock = socket.create_connection(("127.0.0.1", worker.port))
            opened.append(sock)
            sock.sendall(b"GET /health HTTP/1.1\r\n\r\n")
            answer = sock.recv(65536)
            if not answer.startswith(b"HTTP/1.1 200 "):
                break
        assert answer.startswith(b"HTTP/1.1 503 ")
        assert answer.endswith(b'{"error":"too many connections"}')
        assert len(opened) > 9_995
    finally:
        for sock in opened:
            sock.close()
    next(watched)
    deadline = time.monotonic() + 30
    while httpx.get(worker.url + "/health").status_code != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_at_most_10_000_invocations_queue(tmp_path_factory: pytest.TempPathFactory) -> None:
    spec = spec_for(SOURCE, "wait", max_concurrency=1)
    with running_worker(tmp_path_factory.mktemp("q"), spec) as run:
        requests = b"".join(_post(f"q{number}") for number in range(10_002))
        answers = _pipelined(run, requests, 10_002)
        with run.client() as client:
            health = client.get("/health").json()
            assert (health["running"], health["queued"]) == (1, 10_000)
            assert client.delete("/invocations/q5").json()["state"] == "cancelled"
            assert client.post("/invocations", json={"id": "again", "input": {}}).status_code == 201
    assert answers.count(b"HTTP/1.1 201 ") == 10_001
    assert answers.count(b"HTTP/1.1 503 ") == 1
    assert b'{"error":"busy"}' in answers


def _post(ident: str) -> bytes:
    body = json.dumps({"id": ident, "input": {}}).encode()
    return b"POST /invocations HTTP/1.1\r\nContent-Length: %d\r\n\r\n%b" % (len(body), body)


def _pipelined(run: WorkerProcess, requests: bytes, count: int) -> bytes:
    """Send many requests at once (from a thread), read their answers."""
    with run.connect() as sock:
        sender = threading.Thread(target=sock.sendall, args=(requests,))
        sender.start()
        data = b""
        while data.count(b"HTTP/1.1 ") < count:
            more = sock.recv(1 << 20)
            assert more, "the worker closed the connection"
            data += more
        sender.join()
    return data


def test_with_a_secret_every_path_but_health_wants_it(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    spec = {**spec_for("def f():\n    return 1\n", "f"), "secret": "s3cret-value"}
    with running_worker(tmp_path_factory.mktemp("s"), spec) as run:
        with run.client() as anyone:
            assert anyone.get("/health").status_code == 200
            refused = anyone.post("/invocations", json={"id": "x", "input": {}})
            assert refused.status_code == 401
            assert anyone.get("/invocations/x").status_code == 401
            assert anyone.get("/anything").status_code == 401
        with run.connect() as sock:  # refused, and not kept waiting on
            sock.sendall(b"GET /invocations/x HTTP/1.1\r\n\r\nGET /health HTTP/1.1\r\n\r\n")
            answer = _read_to_end(sock)
        assert answer.startswith(b"HTTP/1.1 401 ")
        assert answer.count(b"HTTP/1.1 ") == 1
        wrong = {"X-Hpcgate-Worker-Secret": "s3cret-valuf"}
        with run.client(headers=wrong) as guesser:
            assert guesser.get("/invocations/x").status_code == 401
        right = {"X-Hpcgate-Worker-Secret": "s3cret-value"}
        with run.client(headers=right) as gateway:
            assert gateway.get("/invocations/x").status_code == 404  # nothing was created
            assert invoke(gateway, "x") == [{"seq": 1, "type": "result", "data": 1}]
            assert len(events(gateway, "x")) == 1


def _read_to_end(sock: socket.socket) -> bytes:
    data = b""
    while more := sock.recv(65536):
        data += more
    return data
