"""WebSockets through the proxy, on the embedded scheduler and a real gateway: a real
WebSocket server (``tests/support/socket_backend.py``) started as a real job."""

from __future__ import annotations

import sysconfig
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.services import (
    FOR_ALICE,
    SERVICES,
    SYSTEM_PYTHON,
    in_state,
    ready,
    service_table,
    services_gateway,
    wait_replicas,
)

BACKEND = Path(__file__).parents[1] / "support" / "socket_backend.py"
# The replica runs as a user's account, which may not reach the project's interpreter (under
# root's home when root made the virtualenv): the system's Python of the same version, with
# the virtualenv's packages (websockets) on its path.
PACKAGES = sysconfig.get_paths()["purelib"]
SCRIPT = f"#!/bin/sh\nexport PYTHONPATH={PACKAGES}\nexec {SYSTEM_PYTHON} {BACKEND}\n"
OFF = {**FOR_ALICE, "min_replicas": 0, "max_replicas": 0}
CONFIG = f"""
service_interval = 0.2
service_wait_seconds = 3

[systems.local]
scheduler = "embedded"
status_interval = 0.2
slots = 8

{service_table("sock", script=SCRIPT, **FOR_ALICE)}
{service_table("frail", script=SCRIPT, **FOR_ALICE)}
{service_table("off", script=SCRIPT, **OFF)}
{service_table("whole", script=SCRIPT, keep_prefix=True, **FOR_ALICE)}"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with services_gateway(tmp_path_factory.mktemp("gateway"), CONFIG) as server:
        yield server


alice = user_client("alice")


@pytest.fixture(scope="module")
def token(gateway: GatewayProcess, alice: httpx.Client) -> str:
    for name in ("sock", "whole", "frail"):
        wait_replicas(alice, name, in_state("ready"))
    return gateway.token("alice")


def ws_url(gateway: GatewayProcess, name: str, path: str = "") -> str:
    return gateway.url.replace("http://", "ws://", 1) + f"{SERVICES}/{name}/proxy{path}"


def open_socket(
    gateway: GatewayProcess, token: str | None, name: str = "sock", path: str = "/chat", **kw: Any
) -> ClientConnection:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = ws_url(gateway, name, path)
    made: ClientConnection = connect(url, additional_headers=headers, open_timeout=30, **kw)
    return made


def test_messages_go_both_ways(gateway: GatewayProcess, token: str) -> None:
    with open_socket(gateway, token, subprotocols=["chat"], max_size=None) as socket:
        assert socket.subprotocol == "chat"
        socket.send("hello")
        assert socket.recv(timeout=10) == "hello"
        socket.send(b"\x00\xffbinary")
        assert socket.recv(timeout=10) == b"\x00\xffbinary"
        socket.send("path")
        assert socket.recv(timeout=10) == "/chat"  # the prefix is not passed on
        big = bytes(range(256)) * 8192  # 2 MiB, more than one read of the relay
        socket.send(big)
        assert socket.recv(timeout=30) == big


def test_a_burst_arrives_whole_and_in_order(gateway: GatewayProcess, token: str) -> None:
    with open_socket(gateway, token, max_size=None) as socket:
        socket.send("burst 200 65536")
        got = [socket.recv(timeout=30) for _ in range(200)]
        assert got == [b"b" * 65536] * 200
        socket.send("after")
        assert socket.recv(timeout=10) == "after"


def test_the_replicas_close_code_reaches_the_caller(gateway: GatewayProcess, token: str) -> None:
    with open_socket(gateway, token) as socket:
        socket.send("close 4001 enough for now")
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "enough for now")


def test_a_message_over_the_bound_closes_the_socket_1009(
    gateway: GatewayProcess, token: str
) -> None:
    """A replica's message larger than the relay takes ends the socket, and says why."""
    with open_socket(gateway, token, max_size=None) as socket:
        socket.send(f"burst 1 {(16 << 20) + 1}")
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=30)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009


def test_a_replica_that_dies_closes_the_socket_1014(gateway: GatewayProcess, token: str) -> None:
    """Its connection ends without a close frame: the caller gets 1014 (bad gateway), which
    can be sent, not 1006, which cannot."""
    with open_socket(gateway, token, name="frail") as socket:
        socket.send("exit")
        with pytest.raises(ConnectionClosed) as closed:
            socket.recv(timeout=30)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1014


def test_the_callers_close_code_reaches_the_replica(gateway: GatewayProcess, token: str) -> None:
    with open_socket(gateway, token) as socket:
        socket.close(4002, "caller leaves")  # done when the gateway answers: the relay goes on
    deadline = time.monotonic() + 10
    seen: str | bytes = ""
    while seen != "4002 caller leaves" and time.monotonic() < deadline:
        with open_socket(gateway, token) as socket:
            socket.send("last close")
            seen = socket.recv(timeout=10)
    assert seen == "4002 caller leaves"


def test_pings_are_answered_both_ways(gateway: GatewayProcess, token: str) -> None:
    with open_socket(gateway, token) as socket:
        assert socket.ping(b"from the caller").wait(timeout=10)
        socket.send("ping")  # the replica pings the gateway and waits for its pong
        assert socket.recv(timeout=10) == "pong seen"


def test_an_open_socket_counts_in_flight(
    gateway: GatewayProcess, token: str, alice: httpx.Client
) -> None:
    def in_flight() -> int:
        [replica] = ready(alice.get(f"{SERVICES}/sock").json()["replicas"])
        return int(replica["in_flight"])

    idle = lambda found: found[0]["in_flight"] == 0  # noqa: E731
    wait_replicas(alice, "sock", idle, timeout=10)  # earlier tests' sockets are done
    with open_socket(gateway, token) as socket:
        socket.send("x")
        socket.recv(timeout=10)
        assert in_flight() == 1
    wait_replicas(alice, "sock", idle, timeout=10)


def test_a_service_keeping_its_prefix_gets_the_whole_path(
    gateway: GatewayProcess, token: str
) -> None:
    with open_socket(gateway, token, name="whole", path="/a/b?c=d") as socket:
        socket.send("path")
        assert socket.recv(timeout=10) == f"{SERVICES}/whole/proxy/a/b?c=d"
        socket.send("env")
        assert socket.recv(timeout=10) == f"{SERVICES}/whole/proxy/"
    with open_socket(gateway, token) as socket:
        socket.send("env")  # the job is told its prefix either way
        assert socket.recv(timeout=10) == f"{SERVICES}/sock/proxy/"


def refusal(gateway: GatewayProcess, token: str | None, **kw: Any) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as refused:
        open_socket(gateway, token, **kw).close()
    return refused.value


@pytest.mark.parametrize("token", [None, "not-a-token"])
def test_no_valid_token_is_a_401(gateway: GatewayProcess, token: str | None) -> None:
    answer = refusal(gateway, token).response
    assert answer.status_code == 401
    assert answer.headers["content-type"] == "application/problem+json"
    assert b"unauthenticated" in answer.body


def test_a_service_not_shared_is_a_404(gateway: GatewayProcess, token: str) -> None:
    bob = gateway.token("bob")
    for name, who in [("sock", bob), ("nothing", token), ("Bad..Name", token)]:
        answer = refusal(gateway, who, name=name).response
        assert answer.status_code == 404, name
        assert answer.headers["content-type"] == "application/problem+json"


def test_the_replicas_refusal_comes_back_as_it_was(gateway: GatewayProcess, token: str) -> None:
    answer = refusal(gateway, token, path="/refuse").response
    assert (answer.status_code, answer.body) == (403, b"refused here\n")


def test_no_replica_in_time_is_a_503_with_retry_after(gateway: GatewayProcess, token: str) -> None:
    answer = refusal(gateway, token, name="off").response
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert int(answer.headers["retry-after"]) > 0
    assert b"no-replica" in answer.body


def test_the_openapi_document_tells_of_the_websocket(gateway: GatewayProcess) -> None:
    document = httpx.get(f"{gateway.url}/openapi.json").json()
    operation = document["paths"][f"{SERVICES}/{{name}}/proxy/{{path}}"]["get"]
    assert "Upgrade: websocket" in operation["description"]
