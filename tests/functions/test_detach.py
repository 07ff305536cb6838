"""Detaching with a grace, and callers that leave: a real gateway on the embedded scheduler,
its worker a real job, over real HTTP."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hpcgate import Client
from tests.functions.conftest import CONFIG
from tests.support.functions import (
    FUNCTIONS,
    SLOW,
    delete_all,
    invocation,
    invoked,
    register,
    wait_state,
    wait_workers,
)
from tests.support.gateway_process import GatewayProcess, new_gateway, user_client
from tests.support.services import admin_token, stop_services

alice = user_client("alice")

LONG = {"count": 2000, "pause": 0.05}  # some 100 s: far longer than any test waits


def test_a_grace_keeps_an_invocation_while_a_client_reads_and_cancels_it_once_none_does(
    alice: httpx.Client,
) -> None:
    name = register(alice, SLOW)
    with invoked(alice, name, LONG, detach="3") as (key, events):
        next(events)
    shown = invocation(alice, name, key)
    assert (shown["detached"], shown["grace"]) == (True, 3)
    time.sleep(1)
    assert invocation(alice, name, key)["state"] == "running"  # within its grace
    url = f"{FUNCTIONS}/{name}/invocations/{key}/events"
    attached = time.monotonic()
    with alice.stream("GET", url, headers={"Accept": "text/event-stream"}) as answer:
        for _ in answer.iter_lines():  # a client reads again: past its grace and a round
            if time.monotonic() - attached > 6:
                break
    left = time.monotonic()
    assert invocation(alice, name, key)["state"] == "running"
    found = wait_state(alice, name, key, "cancelled", timeout=20)
    assert time.monotonic() - left > 2.5  # not before its grace
    assert found["error"]["type"] == "Cancelled"
    assert "no client read its events for 3 s" in found["error"]["message"]


def test_detach_true_is_for_ever_and_a_grace_is_bounded(alice: httpx.Client) -> None:
    name = register(alice, "def f():\n    return 1\n")
    for bad in ("86401", "-1", "1.5", "soon"):
        answer = alice.post(f"{FUNCTIONS}/{name}/invoke", params={"detach": bad}, json={})
        assert answer.status_code == 422, (bad, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    assert alice.get(f"{FUNCTIONS}/{name}/invocations").json() == []  # nothing recorded
    kinds = {"true": (True, None), "86400": (True, 86400), "0": (False, None)}
    for asked, kept in kinds.items():
        body = alice.post(f"{FUNCTIONS}/{name}/invoke", params={"detach": asked}, json={})
        assert body.status_code == 200, body.text
        shown = invocation(alice, name, body.json()["id"])
        assert (shown["detached"], shown["grace"]) == kept, asked


@pytest.mark.parametrize("detach", [None, "0"])
def test_a_caller_answered_whole_that_disconnects_cancels_its_invocation(
    alice: httpx.Client, detach: str | None
) -> None:
    name = register(alice, SLOW, min_workers=1)
    wait_workers(alice, name)
    params = {"detach": detach} if detach else {}
    with pytest.raises(httpx.ReadTimeout):
        alice.post(f"{FUNCTIONS}/{name}/invoke", json=LONG, params=params, timeout=2)
    [found] = alice.get(f"{FUNCTIONS}/{name}/invocations").json()
    found = wait_state(alice, name, found["id"], "cancelled", timeout=10)
    assert found["error"]["type"] == "Cancelled"


CLIENT = """
import sys
from hpcgate import Client

url, token, name = sys.argv[1:]
with Client(url, token) as hpc:
    events = hpc.functions.invoke(name, {"count": 1000, "pause": 0.05}, grace=2)
    next(events)
    print(events.id, flush=True)
    sys.stdin.read()  # until the test kills it
"""


def test_an_sdk_client_that_dies_leaves_its_invocation_only_for_its_grace(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    name = register(alice, SLOW)
    token = gateway.token("alice")
    with Client(gateway.url, token) as hpc:
        events = hpc.functions.invoke(name, LONG)
        next(events)
        assert hpc.functions.invocation(name, str(events.id)).grace == 60  # the default
        events.close()
        with pytest.raises(ValueError, match="grace"):
            hpc.functions.invoke(name, LONG, grace=0)
    argv = [sys.executable, "-c", CLIENT, gateway.url, token, name]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as dying:
        assert dying.stdout is not None
        key = dying.stdout.readline().strip()
        dying.kill()
    assert invocation(alice, name, key)["state"] == "running"
    found = wait_state(alice, name, key, "cancelled", timeout=15)
    assert "no client read its events for 2 s" in found["error"]["message"]


def test_a_restarted_gateway_keeps_the_grace_counting_from_its_start(tmp_path: Path) -> None:
    server = new_gateway(tmp_path / "home", CONFIG)
    try:
        server.start()
        token = server.token("alice")
        with server.client(token) as client:
            name = register(client, SLOW)
            with invoked(client, name, LONG, detach="10") as (key, events):
                next(events)
            server.stop(signal.SIGKILL)
            time.sleep(11)  # longer than its grace, while no gateway counts
            server.start()
            assert invocation(client, name, key)["state"] == "running"  # counted anew
            found = wait_state(client, name, key, "cancelled", timeout=30)
            assert "no client read its events for 10 s" in found["error"]["message"]
            delete_all(client)
        stop_services(server.url, admin_token(server.home), [token])
    finally:
        server.stop()
