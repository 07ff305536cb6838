"""Functions from the SDK and the command line, against a real gateway whose workers run as
real jobs on the embedded scheduler: ``client.functions``, ``@client.function``, the
functions' Executor, a stream resumed after its connection was cut, ``hpcgate functions``."""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, Field

from hpcgate.client import (
    AsyncClient,
    Client,
    Error,
    FunctionFailed,
    Output,
    Result,
)
from hpcgate.model.errors import Conflict
from tests.functions.conftest import CONFIG
from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.services import SYSTEM_PYTHON, admin_token, stop_services

WORKER: dict[str, Any] = {"python": SYSTEM_PYTHON}


class Steps(BaseModel):
    steps: int = Field(3, ge=0)
    word: str = "x"


def counted(steps: int, word: str = "x"):  # type: ignore[no-untyped-def]
    for i in range(steps):
        yield f"{word} {i}"
    return {"steps": steps}


def slow(count: int, pause: float):  # type: ignore[no-untyped-def]
    import time

    for i in range(count):
        time.sleep(pause)
        yield i
    return "done"


def broken(why: str) -> None:
    raise ValueError(f"broken: {why}")


def add(a: int, b: int = 0) -> int:
    return a + b


def nap(seconds: float) -> float:
    import time

    time.sleep(seconds)
    return seconds


@pytest.fixture(scope="module")
def token(gateway: GatewayProcess) -> str:
    return gateway.token("alice")


@pytest.fixture
def hpc(gateway: GatewayProcess, token: str) -> Iterator[Client]:
    with Client(gateway.url, token) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def test_a_decorated_function_streams_and_returns_its_result(hpc: Client) -> None:
    name = unique("count")

    @hpc.function(system="local", input=Steps, name=name, **WORKER)
    def counted_here(steps: int, word: str = "x"):  # type: ignore[no-untyped-def]
        for i in range(steps):
            yield f"{word} {i}"
        return {"steps": steps}

    assert counted_here.remote == name
    assert counted_here.spec.source is not None
    assert counted_here.spec.source.startswith("def counted_here(")  # the decorator stripped
    events = list(counted_here.stream(steps=2, word="w"))
    assert events == [Output(1, "w 0"), Output(2, "w 1"), Result(3, {"steps": 2})]
    assert counted_here() == {"steps": 3}  # the model's default, sent as JSON
    with pytest.raises(ValueError, match="steps"):  # pydantic's, here: nothing is sent
        counted_here(steps=-1)
    assert [i.state.value for i in hpc.functions.invocations(name)] == ["succeeded"] * 2


def test_registering_again_reuses_the_same_and_refuses_other_content(hpc: Client) -> None:
    name = unique("again")
    first = hpc.function(system="local", input=Steps, name=name, **WORKER)(counted)
    second = hpc.function(system="local", input=Steps, name=name, **WORKER)(counted)
    created = first.register()
    assert second.register().created_at == created.created_at  # the 409 of the same: reused
    other = hpc.function(system="local", name=name, **WORKER)(counted)  # another schema
    with pytest.raises(Conflict, match="other content"):
        other.register()
    assert hpc.functions.get(name).input_schema == Steps.model_json_schema()
    replaced = hpc.function(system="local", name=name, replace=True, **WORKER)(counted)
    assert replaced.register().input_schema == {"type": "object"}


def test_an_error_carries_its_type_message_and_traceback(hpc: Client) -> None:
    remote = hpc.function(system="local", name=unique("broken"), **WORKER)(broken)
    with pytest.raises(FunctionFailed) as failed:
        remote(why="on purpose")
    assert (failed.value.type, failed.value.message) == ("ValueError", "broken: on purpose")
    assert failed.value.traceback is not None
    assert "line 2, in broken" in failed.value.traceback  # the worker's source has no file
    assert failed.value.invocation is not None
    found = hpc.functions.invocation(remote.remote, failed.value.invocation)
    assert found.state.value == "failed"


def test_functions_by_name_list_get_events_cancel_and_delete(hpc: Client) -> None:
    name = unique("named")
    hpc.functions.register(
        name=name, system="local", source=source(slow), callable="slow", **WORKER
    )
    assert name in [f.name for f in hpc.functions.list()]
    assert hpc.functions.call(name, {"count": 2, "pause": 0.01}) == "done"
    events = hpc.functions.invoke(name, {"count": 1000, "pause": 0.05}, detach=True)
    assert next(events) == Output(1, 0)
    key = events.id
    assert key is not None
    events.close()  # detached: closing does not cancel it
    assert hpc.functions.invocation(name, key).state.value == "running"
    later = hpc.functions.events(name, key, after=1)
    assert next(later).seq == 2
    hpc.functions.cancel(name, key)
    rest = list(later)
    assert isinstance(rest[-1], Error) and rest[-1].error.type == "Cancelled"
    hpc.functions.delete(name)
    assert name not in [f.name for f in hpc.functions.list()]


def test_leaving_a_stream_early_cancels_its_invocation(hpc: Client) -> None:
    name = unique("early")
    hpc.functions.register(
        name=name, system="local", source=source(slow), callable="slow", **WORKER
    )
    events = hpc.functions.invoke(name, {"count": 1000, "pause": 0.05})
    assert next(events).seq == 1
    events.close()
    assert hpc.functions.invocation(name, str(events.id)).state.value == "cancelled"


class Relay:
    """A real TCP relay between the client and the gateway whose connections the test can
    cut at once (as a network that drops them)."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.made: list[socket.socket] = []
        self.connections = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.open += [client, upstream]
            self.made += [client, upstream]
            self.connections += 1
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        for end in (source, sink):
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        for end in self.open:
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
        self.open = []

    def close(self) -> None:
        self.cut()
        self.listener.close()
        for end in self.made:
            end.close()


def test_a_cut_connection_resumes_with_exactly_the_rest(
    hpc: Client, gateway: GatewayProcess, token: str
) -> None:
    name = unique("resume")
    hpc.functions.register(
        name=name, system="local", source=source(slow), callable="slow", **WORKER
    )
    host, port = gateway.url.removeprefix("http://").rsplit(":", 1)
    relay = Relay((host, int(port)))
    try:
        with Client(f"http://127.0.0.1:{relay.port}", token) as through:
            seen = []
            # 0.15 s apart: the worker is still far from its end when the first resume
            # comes, even on a loaded machine (at 0.05 s a resume 1.3 s late found every
            # event made and brought them all at once, leaving the second cut nothing to cut)
            for event in through.functions.invoke(name, {"count": 30, "pause": 0.15}):
                seen.append(event)
                if event.seq in (5, 12):
                    relay.cut()
    finally:
        relay.close()
    assert relay.connections >= 3  # the invoke, then a resume after each cut
    assert [e.seq for e in seen] == list(range(1, 32))
    assert [e.data for e in seen if isinstance(e, Output)] == list(range(30))
    assert seen[-1] == Result(31, "done")
    [only] = hpc.functions.invocations(name)  # resumed, never invoked again
    assert (only.state.value, only.events) == ("succeeded", 31)


def test_a_stream_resumes_across_a_gateway_restart(tmp_path: Path) -> None:
    server = new_gateway(tmp_path / "home", CONFIG)
    server.start()
    token = server.token("alice")
    try:
        with Client(server.url, token) as client:
            name = unique("restart")
            client.functions.register(
                name=name, system="local", source=source(slow), callable="slow", **WORKER
            )
            events = client.functions.invoke(name, {"count": 60, "pause": 0.05})
            first = [next(events), next(events)]
            server.stop()
            server.start()  # the worker, a job, outlives the gateway; the new one finds it
            seen = first + list(events)
            assert [e.seq for e in seen] == list(range(1, 62))
            assert seen[-1] == Result(61, "done")
            assert [i.state.value for i in client.functions.invocations(name)] == ["succeeded"]
            client.functions.delete(name)
        stop_services(server.url, admin_token(server.home), [token])
    finally:
        server.stop()


def test_an_executor_runs_several_futures(hpc: Client) -> None:
    with hpc.functions.executor("local", max_workers=2, **WORKER) as run:
        futures = [run.submit(add, i, b=10) for i in range(6)]
        done = [f.result(timeout=120) for f in concurrent.futures.as_completed(futures)]
        assert sorted(done) == [10 + i for i in range(6)]
        assert list(run.map(add, [1, 2, 3], [4, 5, 6])) == [5, 7, 9]
        failing = run.submit(broken, "in a future")
        with pytest.raises(FunctionFailed, match="broken: in a future"):
            failing.result(timeout=120)
        assert futures[0].invocation is not None
    names = {f.name for f in hpc.functions.list() if f.name.startswith("x")}
    assert len(names) == 2  # add once, broken once: by the hash of their source


def test_cancelling_a_future_cancels_its_invocation(hpc: Client) -> None:
    with hpc.functions.executor("local", **WORKER) as run:
        first = run.submit(slow_result, 1000, 0.05)
        deadline = 60.0
        while first.invocation is None and deadline > 0:
            threading.Event().wait(0.1)
            deadline -= 0.1
        key = first.invocation
        assert key is not None
        assert first.cancel() and first.cancelled()
        remote = next(iter(run._registered))
        state = hpc.functions.invocation(remote, key).state.value
        assert state == "cancelled"


def slow_result(count: int, pause: float) -> str:
    import time

    for _ in range(count):
        time.sleep(pause)
    return "slept"


def test_what_cannot_be_sent_is_refused_before_anything_is(hpc: Client) -> None:
    before = hpc.functions.list()
    with pytest.raises(ValueError, match="lambda"):
        hpc.function(system="local")(lambda x: x)
    typed_in: dict[str, Any] = {}
    exec("def typed(x):\n    return x\n", typed_in)  # noqa: S102 - as typed in a session
    with pytest.raises(ValueError, match="interactive"):
        hpc.function(system="local")(typed_in["typed"])
    factor = 3

    def closure(x: int) -> int:
        return x * factor

    with pytest.raises(ValueError, match="factor"):
        hpc.function(system="local")(closure)
    with hpc.functions.executor("local", **WORKER) as run:
        with pytest.raises(TypeError, match="JSON"):
            run.submit(add, object())
        with pytest.raises(TypeError, match="JSON"):
            run.submit(add, float("nan"))
        with pytest.raises(ValueError, match="lambda"):
            run.submit(lambda: 1)
    remote = hpc.function(system="local", name=unique("json"), **WORKER)(add)
    with pytest.raises(TypeError, match="JSON"):
        remote(a={1, 2})
    # nothing registered (names: an earlier test's pool may change its workers meanwhile)
    assert [f.name for f in hpc.functions.list()] == [f.name for f in before]


async def test_the_async_client_invokes_calls_and_decorates(
    gateway: GatewayProcess, token: str
) -> None:
    name = unique("async")
    async with AsyncClient(gateway.url, token) as client:
        await client.functions.register(
            name=name, system="local", source=source(counted), callable="counted", **WORKER
        )
        events = [e async for e in client.functions.invoke(name, {"steps": 2})]
        assert events == [Output(1, "x 0"), Output(2, "x 1"), Result(3, {"steps": 2})]
        assert await client.functions.call(name, {"steps": 0}) == {"steps": 0}
        with pytest.raises(FunctionFailed):
            await client.functions.call(name, {"steps": "no"})
        await client.functions.delete(name)
        remote = client.function(system="local", input=Steps, name=unique("adec"), **WORKER)
        decorated = remote(counted)
        assert await decorated(steps=1, word="a") == {"steps": 1}
        streamed = [e async for e in decorated.stream(steps=1, word="b")]
        assert streamed == [Output(1, "b 0"), Result(2, {"steps": 1})]


def source(fn: Any) -> str:
    import inspect

    return inspect.getsource(fn)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hpcgate", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def interrupt_an_invocation(env: dict[str, str], name: str) -> str:
    """Run ``functions invoke`` of a slow function, Ctrl-C once its first output came; its
    first line."""
    argv = [sys.executable, "-m", "hpcgate", "functions", "invoke", name]
    value = '{"count": 1000, "pause": 0.05}'
    with subprocess.Popen(
        [*argv, value], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as running:
        assert running.stdout is not None
        first = running.stdout.readline().strip()
        running.send_signal(signal.SIGINT)
        _, stderr = running.communicate(timeout=60)
    assert running.returncode == 130, stderr
    return first


def test_the_command_line(gateway: GatewayProcess, token: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCGATE_")}
    env |= {"HPCGATE_URL": gateway.url, "HPCGATE_TOKEN": token}
    env["HPCGATE_CONFIG_DIR"] = str(tmp_path / "config")
    name = unique("cli")
    file = tmp_path / "f.py"
    file.write_text(source(counted) + "\n" + source(broken))
    registered = run_cli(
        env, "functions", "register", name, str(file), "--callable", "counted",
        "--python", SYSTEM_PYTHON, "--system", "local", "--json",
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    assert json.loads(registered.stdout)["callable"] == "counted"
    invoked = run_cli(env, "functions", "invoke", name, '{"steps": 2, "word": "w"}')
    assert invoked.returncode == 0, invoked.stderr
    assert invoked.stdout.splitlines() == ["w 0", "w 1", '{"steps": 2}']
    sealed = run_cli(env, "functions", "invoke", name, '{"steps": 1}', "--encrypt")
    assert sealed.returncode == 0, sealed.stderr
    assert sealed.stdout.splitlines() == ["x 0", '{"steps": 1}']
    failed = run_cli(env, "functions", "invoke", name, '{"steps": "many"}')
    assert failed.returncode == 1
    assert "error: TypeError" in failed.stderr and "Traceback" in failed.stderr
    listed = run_cli(env, "functions", "ls")
    assert listed.returncode == 0 and name in listed.stdout
    shown = run_cli(env, "functions", "show", name)
    assert shown.returncode == 0 and "def counted(" in shown.stdout
    refused = run_cli(env, "functions", "invoke", name, "[1]")
    assert refused.returncode == 2 and "JSON object" in refused.stderr
    with Client(gateway.url, token) as hpc:
        slow_one = unique("clislow")
        hpc.functions.register(
            name=slow_one, system="local", source=source(slow), callable="slow", **WORKER
        )
        events = hpc.functions.invoke(slow_one, {"count": 1000, "pause": 0.05}, detach=True)
        next(events)
        events.close()
        cancelled = run_cli(env, "functions", "cancel", slow_one, str(events.id), "--json")
        assert cancelled.returncode == 0, cancelled.stderr
        assert json.loads(cancelled.stdout)["id"] == events.id
        assert hpc.functions.invocation(slow_one, str(events.id)).state.value == "cancelled"
        interrupted_key = interrupt_an_invocation(env, slow_one)
        [latest, *_] = hpc.functions.invocations(slow_one)
        assert latest.id != events.id and interrupted_key == "0"
        assert latest.state.value == "cancelled"  # Ctrl-C cancelled it
    removed = run_cli(env, "functions", "rm", name)
    assert removed.returncode == 0, removed.stderr
    gone = run_cli(env, "functions", "show", name)
    assert gone.returncode == 3
