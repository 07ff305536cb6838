"""Services on the real Slurm cluster under faults: a walltime handover under load (no
request fails), a replica's job cancelled under load (new requests go to the other; it is
replaced), and a gateway restarted while its replicas run (it finds them: the same jobs,
no new one)."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.service_faults import cancel_under_load, handover_under_load
from tests.support.services import (
    SERVICES,
    create_service,
    in_state,
    replicas,
    service_table,
    wait_replicas,
)
from tests.support.slurm import SYSTEM, services_config, slurm_services_gateway

SETTINGS = {"users": ["*"], "run_as": "alice", "time_limit": 600, "ready_timeout": 60}
CONFIG = services_config(
    service_table("pair", SYSTEM, min_replicas=2, max_replicas=2, **SETTINGS),
    service_table("kept", SYSTEM, min_replicas=1, max_replicas=1, **SETTINGS),
)


@pytest.fixture(scope="module")
def gateway(
    slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    with slurm_services_gateway(tmp_path_factory.mktemp("slurm-service-faults"), CONFIG) as server:
        yield server


bob = user_client("bob")


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


def test_a_handover_under_streamed_load_fails_no_request(
    gateway: GatewayProcess, bob: httpx.Client
) -> None:
    """Its replica hands over 10 s after its start (Slurm's shortest limit, a minute, 50 s
    ahead)."""
    spec = {"system": SYSTEM, "time_limit": 60, "handover_seconds": 50}
    name = create_service(bob, min_replicas=1, max_replicas=2, **spec)
    handover_under_load(gateway, bob, name)  # see there


def test_a_replica_cancelled_under_load_fails_no_new_request(
    gateway: GatewayProcess, bob: httpx.Client
) -> None:
    cancel_under_load(gateway, bob, "pair")  # see there


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
