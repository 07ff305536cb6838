"""Real worker processes for the worker's tests: started exactly as a pool's job script
starts one (the module's text exec'd by ``python -``, here with no site packages, so
nothing but the standard library and ``PYTHONPATH`` can be imported), on a free port,
talked to over HTTP."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import httpx

from tests.support.gateway_process import free_port


def bootstrap(spec: dict[str, Any]) -> bytes:
    """The program the gateway feeds ``python -``: the worker and the spec, base64."""
    text = resources.files("hpcgate").joinpath("worker.py").read_bytes()
    worker = base64.b64encode(text).decode()
    encoded = base64.b64encode(json.dumps(spec).encode()).decode()
    return (
        f'import base64; exec(compile(base64.b64decode(b"{worker}"), "hpcgate_worker", "exec"));'
        f' main(base64.b64decode(b"{encoded}"))\n'
    ).encode()


class WorkerProcess:
    """One running worker: its process, port and stderr."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log
        self.url = f"http://127.0.0.1:{port}"

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def stderr(self) -> str:
        return self.log.read_text()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=30)

    def wait_ready(self, deadline: float = 30.0) -> None:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if self.process.poll() is not None:
                raise AssertionError(f"the worker exited: {self.stderr()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise AssertionError(f"the worker never answered: {self.stderr()}")


def spec_for(source: str, call: str, **settings: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"name": call, "source": source, "callable": call}
    spec.update({"concurrency": "threads", "max_concurrency": 8, **settings})
    return spec


@contextmanager
def running_worker(
    tmp_path: Path, spec: dict[str, Any], env: dict[str, str] | None = None
) -> Iterator[WorkerProcess]:
    """A worker serving ``spec``, as its job script would start it; stopped (SIGTERM) after."""
    port = free_port()
    log = tmp_path / f"worker-{port}.err"
    environment = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    environment.update(HPCGATE_SERVICE_PORT=str(port), HPCGATE_SERVICE_HOST="127.0.0.1")
    environment.update(env or {})
    with log.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-S", "-"],
            stdin=subprocess.PIPE,
            stderr=err,
            env=environment,
            cwd=tmp_path,
        )
    assert process.stdin is not None
    process.stdin.write(bootstrap(spec))
    process.stdin.close()
    worker = WorkerProcess(process, port, log)
    try:
        worker.wait_ready()
        yield worker
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def events(client: httpx.Client, ident: str, after: int = 0) -> list[dict[str, Any]]:
    """Every event of an invocation after ``after``, read to the stream's end."""
    with client.stream("GET", f"/invocations/{ident}/events", params={"after": after}) as reply:
        assert reply.status_code == 200, reply.read()
        assert reply.headers["content-type"] == "application/x-ndjson"
        return [json.loads(line) for line in reply.iter_lines() if line]


def invoke(client: httpx.Client, ident: str, **arguments: Any) -> list[dict[str, Any]]:
    """POST an invocation and read all its events."""
    reply = client.post("/invocations", json={"id": ident, "input": arguments})
    assert reply.status_code == 201, reply.text
    return events(client, ident)
