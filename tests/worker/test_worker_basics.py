"""The worker's HTTP API on a real worker process in threads mode: health, invocations,
their events (resumed with ``after``), the encodings, failures and import errors."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.worker.support import (
    WorkerProcess,
    events,
    invoke,
    running_worker,
    spec_for,
)

SOURCE = """
import pathlib

def count(n=3, text="x"):
    for i in range(n):
        yield f"{text}{i}"
    return {"n": n}

def plain(a, b):
    return a + b

def once(path):
    with open(path, "a") as marks:
        marks.write("ran\\n")
    return "done"

def shapes():
    yield "line one\\nevent: forged\\ndata: {}\\n\\n"
    yield b"\\x00\\xffbytes"
    yield {"a": [1, 2.5, None, True]}
    yield pathlib.PurePosixPath("/not/json")
    yield float("nan")
    return b"\\x01"

def unserializable():
    return object()

def nothing():
    pass

def broken():
    raise ValueError("bad value")

def huge_output(closed):
    try:
        yield "a" * 10
        yield "b" * (17 * 1024 * 1024)
        yield "never"
    finally:
        open(closed, "w").close()

def huge_result():
    return "r" * (17 * 1024 * 1024)

def huge_message():
    raise ValueError("m" * 1_000_000)
"""


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    with running_worker(tmp_path_factory.mktemp("w"), spec_for(SOURCE, "count")) as started:
        yield started


@pytest.fixture
def client(worker: WorkerProcess) -> Iterator[httpx.Client]:
    with worker.client() as opened:
        yield opened


def test_health_says_ok_with_no_error(client: httpx.Client) -> None:
    reply = client.get("/health")
    assert reply.status_code == 200
    assert reply.json() == {"status": "ok", "running": 0, "queued": 0, "error": None}


def test_a_generator_streams_each_yield_then_its_return_value(client: httpx.Client) -> None:
    got = invoke(client, "gen-1", n=4, text="step ")
    assert got == [
        {"seq": 1, "type": "output", "data": "step 0"},
        {"seq": 2, "type": "output", "data": "step 1"},
        {"seq": 3, "type": "output", "data": "step 2"},
        {"seq": 4, "type": "output", "data": "step 3"},
        {"seq": 5, "type": "result", "data": {"n": 4}},
    ]
    assert client.get("/invocations/gen-1").json() == {
        "id": "gen-1",
        "state": "succeeded",
        "events": 5,
    }


def test_after_resumes_with_exactly_the_rest(client: httpx.Client) -> None:
    invoke(client, "resume-1", n=10)
    rest = events(client, "resume-1", after=7)
    assert [event["seq"] for event in rest] == [8, 9, 10, 11]
    assert events(client, "resume-1", after=11) == []
    beyond = client.get("/invocations/resume-1/events", params={"after": 12})
    assert beyond.status_code == 400


def test_the_same_id_again_never_runs_twice(tmp_path: Path, worker: WorkerProcess) -> None:
    marks = tmp_path / "marks"
    with running_worker(tmp_path, spec_for(SOURCE, "once")) as once, once.client() as client:
        first = client.post("/invocations", json={"id": "o1", "input": {"path": str(marks)}})
        assert first.status_code == 201
        assert events(client, "o1")[-1] == {"seq": 1, "type": "result", "data": "done"}
        again = client.post("/invocations", json={"id": "o1", "input": {"path": str(marks)}})
        assert again.status_code == 200
        assert again.json() == {"id": "o1", "state": "succeeded"}
    assert marks.read_text() == "ran\n"


def test_a_plain_function_returns_its_value(tmp_path: Path) -> None:
    with running_worker(tmp_path, spec_for(SOURCE, "plain")) as plain, plain.client() as client:
        assert invoke(client, "p1", a=2, b=40) == [{"seq": 1, "type": "result", "data": 42}]


def test_a_function_returning_nothing_has_a_null_result(tmp_path: Path) -> None:
    with running_worker(tmp_path, spec_for(SOURCE, "nothing")) as run, run.client() as client:
        assert invoke(client, "n1") == [{"seq": 1, "type": "result", "data": None}]


def test_output_is_encoded_never_interpreted(tmp_path: Path) -> None:
    with running_worker(tmp_path, spec_for(SOURCE, "shapes")) as run, run.client() as client:
        got = invoke(client, "s1")
    assert got[0]["data"] == "line one\nevent: forged\ndata: {}\n\n"
    assert got[1]["encoding"] == "base64"
    assert base64.b64decode(got[1]["data"]) == b"\x00\xffbytes"
    assert got[2]["data"] == {"a": [1, 2.5, None, True]}
    assert got[3]["data"] == "PurePosixPath('/not/json')"
    assert got[4]["data"] == "nan"
    assert got[5]["type"] == "result"
    assert base64.b64decode(got[5]["data"]) == b"\x01"


def test_a_return_value_json_cannot_carry_is_not_serializable(tmp_path: Path) -> None:
    spec = spec_for(SOURCE, "unserializable")
    with running_worker(tmp_path, spec) as run, run.client() as client:
        (final,) = invoke(client, "u1")
        assert final["type"] == "error"
        assert final["data"]["type"] == "NotSerializable"
        assert client.get("/invocations/u1").json()["state"] == "failed"


def test_an_exception_is_an_error_event_with_the_functions_traceback(tmp_path: Path) -> None:
    with running_worker(tmp_path, spec_for(SOURCE, "broken")) as run, run.client() as client:
        (final,) = invoke(client, "b1")
        assert client.get("/invocations/b1").json()["state"] == "failed"
    assert final["type"] == "error"
    assert final["data"]["type"] == "ValueError"
    assert final["data"]["message"] == "bad value"
    trace = final["data"]["traceback"]
    assert 'File "<function broken>", line 32, in broken' in trace
    assert 'raise ValueError("bad value")' in trace  # its source line, from linecache
    assert "hpcgate_worker" not in trace  # the worker's own frames are left out
    assert "b1 failed" in run.stderr()


def test_bad_arguments_fail_the_invocation_not_the_worker(client: httpx.Client) -> None:
    (final,) = invoke(client, "args-1", nope=1)
    assert final["data"]["type"] == "TypeError"
    assert client.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("source", "call", "message"),
    [
        ("def f(:\n  pass\n", "f", "SyntaxError"),
        ("import no_such_module_here\n", "f", "ModuleNotFoundError"),
        ("raise SystemExit(3)\n", "f", "SystemExit"),
        ("def f():\n  pass\n", "g", "has no 'g'"),
        ("f = 3\n", "f", "'f' is not callable"),
    ],
)
def test_a_function_that_cannot_load_ends_every_invocation_at_once(
    tmp_path: Path, source: str, call: str, message: str
) -> None:
    with running_worker(tmp_path, spec_for(source, call)) as run, run.client() as client:
        error = client.get("/health").json()["error"]
        assert error["type"] == "ImportFailed"
        assert message in error["message"]
        assert "traceback" not in error  # /health answers anyone on the node
        (final,) = invoke(client, "i1")
        assert final["type"] == "error"
        assert final["data"]["type"] == "ImportFailed"
        assert client.get("/invocations/i1").json()["state"] == "failed"


def test_an_installed_entry_point_is_imported(tmp_path: Path) -> None:
    package = tmp_path / "site"
    package.mkdir()
    (package / "mymodel.py").write_text("def predict(x):\n    return x * 2\n")
    spec = {"name": "predict", "entry": "mymodel:predict", "callable": "predict"}
    env = {"PYTHONPATH": str(package)}
    with (
        running_worker(tmp_path, {**spec, "max_concurrency": 1}, env) as run,
        run.client() as client,
    ):
        assert invoke(client, "e1", x=21) == [{"seq": 1, "type": "result", "data": 42}]


def test_unknown_invocations_paths_and_ids_are_refused(client: httpx.Client) -> None:
    assert client.get("/invocations/never-seen").status_code == 404
    assert client.get("/invocations/never-seen/events").status_code == 404
    assert client.delete("/invocations/never-seen").status_code == 404
    assert client.get("/elsewhere").status_code == 404
    assert client.get("/invocations/a/b").status_code == 404
    assert client.get("/invocations/" + "x" * 65).status_code == 400
    assert client.get("/invocations/a%2Fb").status_code == 400
    assert client.put("/invocations/x").status_code in (404, 405)
    assert client.get("/invocations").status_code == 405
    reply = client.post("/invocations", json={"id": "bad id", "input": {}})
    assert reply.status_code == 400
    assert "id" in reply.json()["error"]
    assert client.post("/invocations", content=b"{not json").status_code == 400
    assert client.post("/invocations", json=[1]).status_code == 400
    assert client.post("/invocations", json={"id": "ok", "input": [1]}).status_code == 400
    assert client.get("/invocations/ok").status_code == 404  # nothing was created
    assert client.get("/health").json()["status"] == "ok"


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_an_event_over_16_mib_ends_the_invocation(tmp_path: Path, mode: str) -> None:
    closed = tmp_path / "closed"
    spec = spec_for(SOURCE, "huge_output", concurrency=mode)
    with running_worker(tmp_path, spec) as run, run.client() as client:
        got = invoke(client, "h1", closed=str(closed))
    assert [event["type"] for event in got] == ["output", "error"]
    assert got[1]["data"]["type"] == "OutputTooLarge"
    assert closed.exists()  # the generator was closed
    with running_worker(tmp_path, spec_for(SOURCE, "huge_result")) as run, run.client() as client:
        (final,) = invoke(client, "h2")
    assert final["data"]["type"] == "OutputTooLarge"


def test_an_error_message_is_cut_to_64_kib(tmp_path: Path) -> None:
    with running_worker(tmp_path, spec_for(SOURCE, "huge_message")) as run, run.client() as client:
        (final,) = invoke(client, "m1")
    message = final["data"]["message"]
    assert final["data"]["type"] == "ValueError"
    assert 64 * 1024 <= len(message) < 65 * 1024
    assert "characters left out" in message
    assert len(final["data"]["traceback"]) < 5 * 64 * 1024
