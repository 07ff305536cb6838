"""JupyterLab as a service behind the proxy: its declaration and the check that its kernel
runs code through the proxy (the services and SSH tiers share them)."""

from __future__ import annotations

import json
import uuid

import httpx
from websockets.sync.client import connect

from tests.backends.test_jupyter import execute_request, replies_to
from tests.support.backends import Backend
from tests.support.gateway_process import GatewayProcess
from tests.support.services import SERVICES, toml_string

PREFIX = f"{SERVICES}/lab/proxy/"
JUPYTER_START_SECONDS = 180


def jupyter_config(backend: Backend, system: str, more: str = "") -> str:
    """A declared service ``lab`` that runs ``backend`` under the proxy's prefix."""
    return f"""
[services.lab]
system = "{system}"
script = {toml_string(backend.script.read_text())}
keep_prefix = true
health_path = "{PREFIX}api"
min_replicas = 1
max_replicas = 1
users = ["alice"]
{more}
"""


def assert_kernel_runs(gateway: GatewayProcess, client: httpx.Client, token: str) -> None:
    """A kernel started through the proxied REST API answers ``1+1`` with ``2`` over the
    proxied channels WebSocket."""
    started = client.post(f"{PREFIX}api/kernels", params={"token": token}, json={})
    assert started.status_code == 201, started.text
    kernel = started.json()["id"]
    try:
        url = gateway.url.replace("http://", "ws://", 1) + f"{PREFIX}api/kernels/{kernel}/channels"
        url += f"?session_id={uuid.uuid4().hex}&token={token}"
        auth = {"Authorization": client.headers["Authorization"]}
        with connect(url, additional_headers=auth, open_timeout=30) as socket:
            request = execute_request("1+1")
            socket.send(json.dumps(request))
            replies = replies_to(socket, request["header"]["msg_id"])
    finally:
        client.delete(f"{PREFIX}api/kernels/{kernel}", params={"token": token})
    results = [
        m["content"]["data"]["text/plain"] for m in replies if m["msg_type"] == "execute_result"
    ]
    assert results == ["2"]
