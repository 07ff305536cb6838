"""Services under faults, on the embedded scheduler through a real gateway: a walltime
handover while streamed requests keep coming fails none of them; a request sent to a
replica whose server just died goes to another."""

from __future__ import annotations

import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.gateway_process import GatewayProcess
from tests.support.service_faults import handover_under_load
from tests.support.services import (
    BACKEND,
    SERVICES,
    SYSTEM_PYTHON,
    create_service,
    in_state,
    wait_replicas,
)


def test_a_handover_under_streamed_load_fails_no_request(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    """Its replica hands over 6 s after its start (a 20 s limit, 14 s ahead)."""
    name = create_service(alice, min_replicas=1, max_replicas=2, time_limit=20, handover_seconds=14)
    handover_under_load(gateway, alice, name)  # see there


def test_a_request_that_finds_its_replica_gone_goes_to_another(alice: httpx.Client) -> None:
    """Two ready replicas; one's server dies (its job lives on). Before the controller's
    health checks find it out, two requests at once (one per replica, by least in flight):
    the one sent to the dead server cannot connect, so nothing of it was sent, and it goes
    to the other replica instead of failing."""
    script = f"#!/bin/sh\n{SYSTEM_PYTHON} {BACKEND} &\nexec sleep 3600\n"  # the job outlives it
    name = create_service(alice, script=script, min_replicas=2, max_replicas=2)
    wait_replicas(alice, name, in_state("ready", 2))
    dead = alice.get(f"{SERVICES}/{name}/proxy/pid").json()["pid"]
    os.kill(dead, signal.SIGKILL)
    time.sleep(0.1)  # its end reaches the pooled connection, which is then not reused
    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: _streamed(alice, name), range(2)))
    assert [status for status, _ in answers] == [200, 200], answers
    assert dead not in {pid for _, pid in answers}


def _streamed(client: httpx.Client, name: str) -> tuple[int, int | None]:
    params = {"n": 3, "delay": 0.2}
    with client.stream("GET", f"{SERVICES}/{name}/proxy/stream", params=params) as answer:
        lines = list(answer.iter_lines())
    return answer.status_code, int(lines[0].split()[3]) if answer.status_code == 200 else None
