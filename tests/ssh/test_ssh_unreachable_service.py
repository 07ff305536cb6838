"""A service whose system cannot be reached holds up no other service.

A declared service runs on an SSH system whose host accepts connections and never says a
word (a black hole: every login waits out ``connect_timeout``); beside it alice starts a
service of her own on the embedded system, scaled to zero, and sends it a request. Her
request must be answered once her replica is up, not after the controller has waited out
the dead system's timeouts first, round after round.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway_process import TEST_CONFIG, GatewayProcess
from tests.support.services import (
    SERVICES,
    create_service,
    service_table,
    services_gateway,
)
from tests.support.sshd import Sshd

DEAD_SECONDS = 40  # each login to the dead system takes this long to fail


@pytest.fixture
def black_hole() -> Iterator[int]:
    """A port that accepts TCP connections and never sends or closes them."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    held: list[socket.socket] = []

    def hold() -> None:
        with contextlib.suppress(OSError):  # the listener closed: the test is over
            while True:
                held.append(listener.accept()[0])

    thread = threading.Thread(target=hold, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        listener.close()
        for connection in held:
            connection.close()
        thread.join(timeout=5)


@pytest.fixture
def gateway(sshd: Sshd, black_hole: int, tmp_path: Path) -> Iterator[GatewayProcess]:
    dead = sshd.table("dead", "ca", "bob", port=black_hole, connect_timeout=DEAD_SECONDS)
    config = f"""{TEST_CONFIG}
[systems.dead]
scheduler = "slurm"
transport = "ssh"
status_interval = 60

{dead}
{service_table("stranded", "dead", min_replicas=1, max_replicas=1, users=["*"], run_as="bob")}
"""
    with services_gateway(tmp_path / "home", config) as server:
        yield server


def test_a_dead_systems_service_holds_up_no_other(gateway: GatewayProcess) -> None:
    with gateway.client(gateway.token("alice")) as alice:
        name = create_service(alice, min_replicas=0, max_replicas=1)
        time.sleep(1)  # the controller is now inside a round stuck on the dead system
        started = time.monotonic()
        answer = alice.get(f"{SERVICES}/{name}/proxy/pid", timeout=3 * DEAD_SECONDS)
        waited = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    # A cold start here takes a few seconds; a round waiting on the dead system, 40 s.
    assert waited < DEAD_SECONDS / 2, f"the request waited {waited:.1f} s"
