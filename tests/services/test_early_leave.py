"""A caller that leaves before the first chunk of its answer, through a real gateway and a
real backend process (tests/support/service_backend.py) with a real HTTP client that
closes its connection: the request stops counting in flight at once (not when the replica
would have answered), whether the replica had not answered at all (``/hang``, the prompt
``hang``) or had sent its head and not yet a chunk; a ``/v1`` call so ended still counts
as a request in the usage and has its audit record (499 before any answer, else the
answer's status), and the replica serves the next request."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.polling import wait_until
from tests.support.services import (
    SERVICES,
    admin_token,
    backend_script,
    in_state,
    ready,
    services_gateway,
    toml_string,
    wait_replicas,
)

MODEL = "early-leave"
CONFIG = f"""
service_interval = 0.2
service_wait_seconds = 30

[systems.local]
scheduler = "embedded"
status_interval = 0.2
slots = 4

[services.echo]
system = "local"
script = {toml_string(backend_script())}
models = ["{MODEL}"]
min_replicas = 1
max_replicas = 1
users = ["alice"]
run_as = "services"  # no Unix account of that name: the test gateways' fallback account
ready_timeout = 30
request_timeout = 600
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with services_gateway(tmp_path_factory.mktemp("gateway"), CONFIG) as server:
        yield server


alice = user_client("alice")


def _in_flight(client: httpx.Client) -> int:
    return sum(r["in_flight"] for r in ready(wait_replicas(client, "echo", in_state("ready"))))


def _leave(client: httpx.Client, method: str, path: str, body: bytes = b"") -> None:
    """Send the request on a socket of its own, wait until the replica has it (counted in
    flight), then close the socket without a byte of the answer read: a caller that
    gives up."""
    url = httpx.URL(str(client.base_url))
    head = (
        f"{method} {path} HTTP/1.1\r\nhost: {url.host}\r\n"
        f"authorization: {client.headers['authorization']}\r\n"
        f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
    )
    with socket.create_connection((url.host, url.port or 80)) as caller:
        caller.sendall(head.encode() + body)
        assert wait_until(lambda: _in_flight(client) == 1, 10)


def _requests(client: httpx.Client) -> int:
    rows = client.get("/api/v1/usage", params={"model": MODEL}).json()
    return sum(row["requests"] for row in rows)


def _audited(gateway: GatewayProcess, path: str, status: int) -> int:
    """alice's audit records of ``path`` with ``status``."""
    headers = {"Authorization": f"Bearer {admin_token(gateway.home)}"}
    query: dict[str, str | int] = {"user": "alice", "status": status, "limit": 1000}
    page = httpx.get(f"{gateway.url}/api/v1/audit", params=query, headers=headers).json()
    return sum(record["route"] == path for record in page["items"])


def test_a_proxied_request_whose_caller_leaves_unanswered_stops_counting(
    alice: httpx.Client,
) -> None:
    wait_replicas(alice, "echo", in_state("ready"))
    _leave(alice, "GET", f"{SERVICES}/echo/proxy/hang")
    assert wait_until(lambda: _in_flight(alice) == 0, 10)  # not after the replica's 600 s
    assert alice.get(f"{SERVICES}/echo/proxy/path/next").text == "/path/next"


def test_a_v1_call_whose_caller_leaves_before_any_answer_stops_counting(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    wait_replicas(alice, "echo", in_state("ready"))
    before = _audited(gateway, "/v1/completions", 499)
    body = {"model": MODEL, "prompt": "hang", "stream": True}
    _leave(alice, "POST", "/v1/completions", json.dumps(body).encode())
    assert wait_until(lambda: _in_flight(alice) == 0, 10)
    assert wait_until(lambda: _audited(gateway, "/v1/completions", 499) == before + 1, 10)


def test_a_v1_call_whose_caller_leaves_after_the_head_is_counted_and_stops(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    """The backend sends its head, then its first event: a caller that has the head
    and leaves before the first chunk."""
    wait_replicas(alice, "echo", in_state("ready"))
    before, audited = _requests(alice), _audited(gateway, "/v1/completions", 200)
    headers = {"authorization": alice.headers["authorization"]}
    with httpx.Client(base_url=str(alice.base_url), headers=headers) as own:
        body = {"model": MODEL, "prompt": "x", "stream": True}
        with own.stream("POST", "/v1/completions", json=body) as answer:
            assert answer.status_code == 200  # the head came; no chunk read
    assert wait_until(lambda: _in_flight(alice) == 0, 10)
    assert wait_until(lambda: _requests(alice) == before + 1, 10)
    assert wait_until(lambda: _audited(gateway, "/v1/completions", 200) == audited + 1, 10)
