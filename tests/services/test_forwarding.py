"""The forwarding layer in front of the router (hpcgate.api.forwarding): what it serves is
served as the routes would, what it passes on still reaches them, a caller that leaves
frees the replica, and the access log keeps a line per request. (The gateway and the
``alice`` client are the tier's, from conftest.)"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx

from tests.support.gateway_process import GatewayProcess
from tests.support.services import SERVICES, in_state, ready, wait_replicas

PROXY = f"{SERVICES}/echo/proxy"


def _in_flight(client: httpx.Client) -> int:
    return sum(r["in_flight"] for r in ready(wait_replicas(client, "echo", in_state("ready"))))


def _settles(client: httpx.Client, expected: int, seconds: float = 10) -> bool:
    deadline = time.monotonic() + seconds
    while _in_flight(client) != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_a_caller_that_leaves_mid_answer_is_no_longer_in_flight(alice: httpx.Client) -> None:
    wait_replicas(alice, "echo", lambda found: bool(ready(found)))
    with alice.stream("GET", f"{PROXY}/stream", params={"n": 600, "delay": 0.1}) as answer:
        assert answer.status_code == 200
        lines = answer.iter_lines()  # kept: a generator dropped closes the answer
        assert next(lines).startswith("chunk 0")
        assert _settles(alice, 1)  # counted while it streams
    assert _settles(alice, 0)  # and no longer once the caller has gone


def test_the_token_is_checked_as_the_routes_check_it(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    wait_replicas(alice, "echo", lambda found: bool(ready(found)))
    token = alice.headers["authorization"].split(" ", 1)[1]
    url = f"{gateway.url}{PROXY}/pid"
    for header in (None, "", "Basic x", "Bearer", "Bearer \t x", f"Token {token}", "Bearer hpcg_x"):
        headers = {} if header is None else {"Authorization": header}
        answer = httpx.get(url, headers=headers)
        assert answer.status_code == 401, header
        assert answer.headers["content-type"] == "application/problem+json"
        assert answer.headers["www-authenticate"] == "Bearer"
    for header in (f"bearer {token}", f"BEARER   {token}"):
        assert httpx.get(url, headers={"Authorization": header}).status_code == 200, header


def test_what_it_passes_on_the_router_still_answers(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    """A name the pattern refuses, a method the proxy does not take, a path the router
    does not match: the answers they had before the layer."""
    bad_name = alice.get(f"{SERVICES}/Not_A_Name/proxy/pid")
    assert bad_name.status_code == 422
    trace = alice.request("TRACE", f"{PROXY}/pid")
    assert trace.status_code == 405
    assert trace.headers["content-type"] == "application/problem+json"
    assert "GET" in trace.headers["allow"]
    assert alice.get(f"{SERVICES}/echo/proxied/pid").status_code == 404
    assert alice.get(f"{SERVICES}/echo").json()["name"] == "echo"  # the other routes


def test_every_request_has_its_access_log_line(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    wait_replicas(alice, "echo", lambda found: bool(ready(found)))
    marker = f"access-{time.monotonic_ns()}"
    for index in range(20):
        assert alice.get(f"{PROXY}/path/{marker}", params={"i": index}).status_code == 200
    deadline = time.monotonic() + 10
    while gateway.log().count(marker) < 20 and time.monotonic() < deadline:
        time.sleep(0.1)
    lines = [line for line in gateway.log().splitlines() if marker in line]
    assert len(lines) == 20
    for index, line in enumerate(lines):  # in order, each with client, request line, status
        assert "127.0.0.1:" in line
        assert f'"GET {PROXY}/path/{marker}?i={index} HTTP/1.1" 200' in line


def test_a_body_that_proves_too_large_midway_ends_its_count_in_flight(
    alice: httpx.Client,
) -> None:
    """The 413 of a chunked body comes while the request is being forwarded: it counted
    on the replica, and must stop counting at once."""
    wait_replicas(alice, "echo", lambda found: bool(ready(found)))

    def body() -> Iterator[bytes]:
        for _ in range(40):  # 2.5 MiB, over the tier's 1 MiB
            yield b"x" * 65536

    for _ in range(3):
        assert alice.post(f"{PROXY}/echo", content=body()).status_code == 413
    assert _in_flight(alice) == 0
