"""JupyterLab under the proxy's path prefix, reached directly: the REST API starts a kernel and
the kernel executes code over its channels WebSocket (the Jupyter message protocol, v5)."""

from __future__ import annotations

import datetime
import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import ClientConnection, connect

from tests.support.backends import Backend, write_jupyter
from tests.support.gateway_process import free_port


@pytest.fixture
def kernel(jupyter: tuple[str, Backend]) -> Iterator[str]:
    url, backend = jupyter
    started = httpx.post(f"{url}api/kernels", params={"token": backend.token}, json={})
    assert started.status_code == 201, started.text
    kernel_id = str(started.json()["id"])
    yield kernel_id
    httpx.delete(f"{url}api/kernels/{kernel_id}", params={"token": backend.token})


def test_the_health_path_answers_without_a_token(jupyter: tuple[str, Backend]) -> None:
    url, _ = jupyter
    assert "version" in httpx.get(f"{url}api").json()


def test_the_api_refuses_a_missing_or_wrong_token(jupyter: tuple[str, Backend]) -> None:
    url, backend = jupyter
    assert httpx.get(f"{url}api/status").status_code == 403
    assert httpx.get(f"{url}api/status", params={"token": "guess"}).status_code == 403
    assert httpx.get(f"{url}api/status", params={"token": backend.token}).status_code == 200


def test_nothing_is_served_outside_the_base_url(jupyter: tuple[str, Backend]) -> None:
    url, backend = jupyter
    root = url.split("/api/v1/services/", 1)[0]
    assert httpx.get(f"{root}/api/status", params={"token": backend.token}).status_code == 404


def test_a_kernel_executes_code_over_the_websocket(
    jupyter: tuple[str, Backend], kernel: str
) -> None:
    url, backend = jupyter
    channels = url.replace("http://", "ws://", 1) + f"api/kernels/{kernel}/channels"
    query = f"?session_id={uuid.uuid4().hex}&token={backend.token}"
    with connect(channels + query, open_timeout=30) as socket:
        request = execute_request("1+1")
        socket.send(json.dumps(request))
        replies = replies_to(socket, request["header"]["msg_id"])
    results = [m["content"] for m in replies if m["msg_type"] == "execute_result"]
    assert [r["data"]["text/plain"] for r in results] == ["2"]
    reply = next(m for m in replies if m["msg_type"] == "execute_reply")
    assert reply["content"]["status"] == "ok"


def execute_request(code: str) -> dict[str, Any]:
    header = {
        "msg_id": uuid.uuid4().hex,
        "msg_type": "execute_request",
        "username": "test",
        "session": uuid.uuid4().hex,
        "date": datetime.datetime.now(datetime.UTC).isoformat(),
        "version": "5.3",
    }
    content = {"code": code, "silent": False, "store_history": False, "allow_stdin": False}
    return {
        "header": header,
        "parent_header": {},
        "metadata": {},
        "content": content,
        "channel": "shell",
        "buffers": [],
    }


def replies_to(socket: ClientConnection, msg_id: str) -> list[dict[str, Any]]:
    """The kernel's messages answering ``msg_id``, until both its shell reply and its iopub
    status ``idle`` have come (their order between channels is not fixed)."""
    replies: list[dict[str, Any]] = []
    seen: set[str] = set()
    while not {"execute_reply", "idle"} <= seen:
        message = json.loads(socket.recv(timeout=60))
        if message["parent_header"].get("msg_id") != msg_id:
            continue
        replies.append(message)
        seen.add(message["msg_type"])
        if message["msg_type"] == "status":
            seen.add(message["content"]["execution_state"])
    return replies


@pytest.mark.parametrize("token", ["", None], ids=["empty", "unreadable"])
def test_no_token_no_server(tmp_path: Path, token: str | None) -> None:
    """Jupyter with an empty token would take anyone on the node: the script stops first."""
    backend = write_jupyter(tmp_path, base_url="/lab/")
    token_file = tmp_path / "jupyter.token"
    if token is None:
        token_file.unlink()
    else:
        token_file.write_text(token)
    env = {**os.environ, "HPCGATE_SERVICE_PORT": str(free_port())}
    done = subprocess.run([str(backend.script)], env=env, capture_output=True, timeout=30)
    assert done.returncode != 0
