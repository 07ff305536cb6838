"""Services on the real Slurm cluster: replicas are Slurm jobs of the service's account,
found on their node by its NodeAddr, reached through the proxy, replaced when killed."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.jobs import ended, wait_for_job
from tests.support.services import (
    SERVICES,
    backend_script,
    in_state,
    ready,
    replicas,
    service_table,
    wait_replicas,
)
from tests.support.slurm import SYSTEM, services_config, slurm_services_gateway

SERVICE_CONFIG = services_config(
    service_table(
        "shared",
        SYSTEM,
        min_replicas=1,
        max_replicas=1,
        users=["*"],
        run_as="alice",
        time_limit=600,
        ready_timeout=60,
    )
)


@pytest.fixture(scope="module")
def gateway(
    slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    with slurm_services_gateway(
        tmp_path_factory.mktemp("slurm-services"), SERVICE_CONFIG
    ) as server:
        yield server


alice = user_client("alice")


bob = user_client("bob")


def _squeue(job_id: str) -> str:
    """``user name node`` of the job, as Slurm has it."""
    argv = ["squeue", "-h", "-j", job_id, "-o", "%u %j %N"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()


def test_a_declared_service_runs_as_its_account_on_a_node(bob: httpx.Client) -> None:
    [replica] = wait_replicas(bob, "shared", in_state("ready"), timeout=120)
    assert replica["node"].startswith("node") and replica["address"] == "127.0.0.1"
    user, name, node = _squeue(replica["job_id"]).split()
    assert (user, name, node) == ("alice", f"hpcgate-shared-{replica['port']}", replica["node"])
    answer = bob.get(f"{SERVICES}/shared/proxy/pid")
    assert answer.status_code == 200 and answer.json()["port"] == replica["port"]
    streamed = bob.post(f"{SERVICES}/shared/proxy/echo", content=iter([b"a" * 5000, b"b"]))
    assert streamed.content == b"a" * 5000 + b"b"


def test_a_user_service_scales_from_zero_and_is_replaced_when_killed(
    alice: httpx.Client, bob: httpx.Client
) -> None:
    name = f"s{uuid.uuid4().hex[:8]}"
    body = {"name": name, "system": SYSTEM, "script": backend_script(), "max_replicas": 1}
    assert alice.post(SERVICES, json=body).status_code == 201
    assert bob.get(f"{SERVICES}/{name}").status_code == 404
    answer = alice.get(f"{SERVICES}/{name}/proxy/pid")  # waits for a job to start
    assert answer.status_code == 200, answer.text
    [first] = ready(replicas(alice, name))
    assert _squeue(first["job_id"]).split()[0] == "alice"
    assert alice.patch(f"{SERVICES}/{name}", json={"min_replicas": 1}).status_code == 200
    subprocess.run(["scancel", first["job_id"]], check=True, timeout=30)
    found = wait_replicas(
        alice, name, lambda rs: in_state("failed")(rs) and in_state("ready")(rs), timeout=120
    )
    assert next(r for r in found if r["state"] == "ready")["job_id"] != first["job_id"]
    assert alice.delete(f"{SERVICES}/{name}").status_code == 202
    deadline = time.monotonic() + 60
    while alice.get(f"{SERVICES}/{name}").status_code != 404:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    for replica in found:
        wait_for_job(alice, replica["job_id"], ended, system=SYSTEM, timeout=60)
