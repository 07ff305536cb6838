"""A replica that lies: huge, endless or broken headers must cost the gateway a bounded
amount and give the caller a 502 problem document, never a hang or a 500."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.services import (
    FOR_ALICE,
    SERVICES,
    in_state,
    service_table,
    services_gateway,
    wait_replicas,
)

HOSTILE = r"""#!/usr/bin/python3
import os, socket, threading, time

def serve(conn):
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return
            data += chunk
        path = data.split(b" ", 2)[1]
        if path == b"/health" and "trickle" in os.environ["HPCGATE_SERVICE_PREFIX"]:
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while True:
                conn.sendall(b"x-a: b\r\n")
                time.sleep(0.5)
        elif path == b"/health":
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        elif path == b"/slowhead":
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while True:
                conn.sendall(b"x-a: b\r\n")
                time.sleep(1)
        elif path == b"/late":
            time.sleep(1)
            conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate")
        elif path == b"/garbage":
            conn.sendall(os.urandom(100000))

server = socket.create_server(("127.0.0.1", int(os.environ["HPCGATE_SERVICE_PORT"])))
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""

CONFIG = f"""
service_interval = 0.2
service_wait_seconds = 30

[systems.local]
scheduler = "embedded"
status_interval = 0.2
slots = 4

{service_table("liar", script=HOSTILE, request_timeout=5, **FOR_ALICE)}
# its health check never ends: a header line every half second
{service_table("trickle", script=HOSTILE, ready_timeout=10, **FOR_ALICE)}"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with services_gateway(tmp_path_factory.mktemp("gateway"), CONFIG) as server:
        yield server


alice = user_client("alice")


@pytest.mark.parametrize("path", ["huge", "many", "endless", "garbage", "slowhead"])
def test_a_lying_backend_is_a_502_or_504(alice: httpx.Client, path: str) -> None:
    wait_replicas(alice, "liar", in_state("ready"), timeout=60)
    began = time.monotonic()
    answer = alice.get(f"{SERVICES}/liar/proxy/{path}", timeout=60)
    print(path, answer.status_code, time.monotonic() - began, answer.text[:300])
    assert answer.status_code in (502, 504)
    assert answer.headers["content-type"] == "application/problem+json"
    assert alice.get(f"{SERVICES}/liar").status_code == 200


def test_a_health_check_that_never_ends_holds_up_no_other_service(alice: httpx.Client) -> None:
    wait_replicas(alice, "trickle", lambda found: any(r["address"] for r in found))
    body = {"name": "late", "system": "local", "script": HOSTILE, "min_replicas": 1}
    assert alice.post(SERVICES, json=body).status_code == 201
    wait_replicas(alice, "late", in_state("ready"), timeout=40)
    found = wait_replicas(alice, "trickle", lambda found: any(_failed(r) for r in found), 60)
    assert "health" in next(r for r in found if _failed(r))["reason"]


def _failed(replica: dict[str, object]) -> bool:
    return replica["state"] == "failed"


def test_a_caller_gone_before_the_answer_is_no_longer_in_flight(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    wait_replicas(alice, "liar", in_state("ready"), timeout=60)
    for _ in range(3):  # gone while the replica thinks: its answer has no one to go to
        with pytest.raises(httpx.ReadTimeout):
            alice.get(f"{SERVICES}/liar/proxy/late", timeout=0.3)
    # Each answer comes a second later, to no one: then, under load maybe seconds later,
    # its count must end (a count that never ends keeps the replica busy for good).
    found = wait_replicas(alice, "liar", _idle, timeout=30)
    assert all(r["in_flight"] == 0 for r in found if r["state"] == "ready")


def _idle(found: list[dict[str, Any]]) -> bool:
    serving = [r for r in found if r["state"] == "ready"]
    return bool(serving) and all(r["in_flight"] == 0 for r in serving)
