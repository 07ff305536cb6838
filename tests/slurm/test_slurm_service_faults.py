"""Services on the real Slurm cluster under faults: a replica's job cancelled under load
(new requests go to the other; it is replaced), and a gateway restarted while its
replicas run (it finds them: the same jobs, no new one)."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess
from tests.support.load import streamed_load
from tests.support.services import (
    SERVICES,
    bearer,
    in_state,
    replicas,
    service_table,
    services_gateway,
    wait_replicas,
)
from tests.support.slurm import SYSTEM, services_config

STREAMS = 4
SETTINGS = {"users": ["*"], "run_as": "alice", "time_limit": 600, "ready_timeout": 60}
CONFIG = services_config(
    service_table("pair", SYSTEM, min_replicas=2, max_replicas=2, **SETTINGS),
    service_table("kept", SYSTEM, min_replicas=1, max_replicas=1, **SETTINGS),
)


@pytest.fixture(scope="module")
def gateway(
    slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    if os.geteuid() != 0:
        pytest.skip("the multi-user gateway runs as root")
    with services_gateway(tmp_path_factory.mktemp("slurm-service-faults"), CONFIG) as server:
        yield server


@pytest.fixture(scope="module")
def bob(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with gateway.client(gateway.token("bob")) as client:
        yield client


def _listens(port: int) -> bool:
    """Whether a server listens on the port (the test nodes' NodeAddr is 127.0.0.1)."""
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _closed(port: int, timeout: float = 60) -> float:
    """The moment the replica's port no longer takes connections."""
    deadline = time.monotonic() + timeout
    while _listens(port):
        assert time.monotonic() < deadline, f"port {port} still listens"
        time.sleep(0.02)
    return time.monotonic()


def _jobs(name: str) -> list[str]:
    """The ids of the live Slurm jobs of the service's replicas, as squeue has them."""
    argv = ["squeue", "-h", "-u", "alice", "-o", "%i %j"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout
    prefix = f"hpcgate-{name}-"
    return sorted(
        job
        for job, job_name in (line.split() for line in out.splitlines())
        if job_name.startswith(prefix)
    )


def test_a_replica_cancelled_under_load_fails_no_new_request(
    gateway: GatewayProcess, bob: httpx.Client
) -> None:
    """Two ready replicas share 4 streams of requests; one's job is scancelled. A request
    in flight on it then may fail (its server is gone mid-answer), and only such a one, and
    visibly: its answer is cut off, not ended as if whole. Every request that starts after
    the replica's port has closed succeeds, on the other replica until a new one is ready,
    and the service is back to two."""
    first, killed = wait_replicas(bob, "pair", in_state("ready", 2), timeout=120)
    url = f"{SERVICES}/pair/proxy/stream"
    with streamed_load(gateway.url, bearer(bob), url, STREAMS) as load:
        load.wait_for(2 * STREAMS)
        subprocess.run(["scancel", killed["job_id"]], check=True, timeout=30)
        died = _closed(killed["port"])
        found = wait_replicas(
            bob, "pair", lambda rs: in_state("failed")(rs) and in_state("ready", 2)(rs), 120
        )
        count = len(load.outcomes)
        load.wait_for(count + 2 * STREAMS)
    failed = load.failed()
    assert len(failed) <= STREAMS and all(o.started < died for o in failed), failed
    assert load.unseen() == []  # each one cut off: the caller saw it fail
    assert [o for o in load.outcomes if o.started > died and o.error is None]
    [gone] = [r for r in found if r["state"] == "failed"]
    assert gone["id"] == killed["id"]  # its job's end or its failed health checks, first seen
    assert "CANCELLED" in gone["reason"] or gone["reason"] == "3 failed health checks in a row"
    new = {r["job_id"] for r in found if r["state"] == "ready"} - {first["job_id"]}
    assert len(new) == 1 and new != {killed["job_id"]}
    assert len({o.pid for o in load.outcomes[count:]}) == 2  # both serve again


def test_a_restarted_gateway_finds_its_slurm_replica(
    gateway: GatewayProcess, bob: httpx.Client
) -> None:
    """SIGTERM, then a new gateway on the same home: the replica's job is the one that ran
    before (no second job submitted), and the first request goes to the same server."""
    [before] = wait_replicas(bob, "kept", in_state("ready"), timeout=120)
    pid = bob.get(f"{SERVICES}/kept/proxy/pid").json()["pid"]
    assert _jobs("kept") == [before["job_id"]]
    gateway.stop()
    gateway.start()
    started = time.monotonic()
    answer = bob.get(f"{SERVICES}/kept/proxy/pid")
    assert answer.status_code == 200, answer.text
    assert answer.json()["pid"] == pid and time.monotonic() - started < 5  # no cold start
    time.sleep(2)  # a few rounds of the new controller
    [after] = replicas(bob, "kept")
    assert (after["id"], after["job_id"], after["state"]) == (
        before["id"],
        before["job_id"],
        "ready",
    )
    assert _jobs("kept") == [before["job_id"]]
