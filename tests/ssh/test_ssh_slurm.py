"""Slurm over SSH: a multi-user gateway (root) whose system is reached through the test
sshd (scripts/sshd) with certificates from its CA, the real cluster (scripts/slurm) behind.

The gateway's own read-only queries (the watcher's squeue and sacct) log in as bob, the
configured ``user``; every command made for a request logs in as the caller's account.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess, new_gateway, user_client
from tests.support.jobs import ended, hidden_from, submit, wait_for_job
from tests.support.slurm import ensure_cluster
from tests.support.sshd import Sshd

SYSTEM = "remote"
BASE = f"/api/v1/systems/{SYSTEM}"
JOBS = f"{BASE}/jobs"
WORKDIR = f"hpcgate-ssh-{uuid.uuid4().hex[:8]}"  # made by the gateway, over SFTP, as alice


def config(sshd: Sshd) -> str:
    return f"""
max_script_bytes = 65536

[systems.{SYSTEM}]
scheduler = "slurm"
transport = "ssh"
description = "The test cluster, through the test sshd"
status_interval = 0.5
info_cache = 0
workdir = "{{home}}/{WORKDIR}"

{sshd.table(SYSTEM)}
[users]
mode = "multi"
"""


@pytest.fixture(scope="session")
def ssh_gateway(sshd: Sshd, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    if os.geteuid() != 0:
        pytest.skip("the multi-user gateway runs as root")
    ensure_cluster()
    server = new_gateway(tmp_path_factory.mktemp("ssh-gateway"), config(sshd))
    server.start()
    yield server
    server.stop()
    shutil.rmtree(f"{pwd.getpwnam('alice').pw_dir}/{WORKDIR}", ignore_errors=True)


alice = user_client("alice", "ssh_gateway", scope="session")
bob = user_client("bob", "ssh_gateway", scope="session")


def run(client: httpx.Client, script: str, **spec: Any) -> dict[str, Any]:
    return submit(client, SYSTEM, script=f"#!/bin/bash\n{script}\n", **spec)


def finish(client: httpx.Client, job: dict[str, Any]) -> dict[str, Any]:
    return wait_for_job(client, job["id"], ended, system=SYSTEM, timeout=60)


def test_the_system_is_healthy(alice: httpx.Client) -> None:
    system = alice.get(BASE).json()
    assert (system["scheduler"], system["healthy"]) == ("slurm", True)


def test_a_job_runs_as_alice_and_its_output_comes_over_sftp(
    alice: httpx.Client, sshd: Sshd
) -> None:
    script = 'id -un; pwd; echo "$GREETING"'
    job = finish(alice, run(alice, script, environment={"GREETING": "hi; $(id) 'x'"}))
    assert (job["state"], job["exit_code"]) == ("COMPLETED", 0)
    workdir = f"/home/alice/{WORKDIR}"
    assert job["stdout"] == f"{workdir}/slurm-{job['id']}.out"
    assert os.stat(workdir).st_uid == pwd.getpwnam("alice").pw_uid
    output = alice.get(f"{JOBS}/{job['id']}/output").text
    assert output == f"alice\n{workdir}\nhi; $(id) 'x'\n"
    log = sshd.log.read_text(errors="replace")
    assert f"ID hpcgate:{SYSTEM}:alice" in log  # alice's own certificate logged her in
    assert f"ID hpcgate:{SYSTEM}:bob" in log  # the watcher's queries, as the configured user


def test_bob_cannot_see_read_or_cancel_alices_job(alice: httpx.Client, bob: httpx.Client) -> None:
    job = run(alice, "sleep 300")
    hidden_from(bob, JOBS, job["id"])
    wait_for_job(alice, job["id"], lambda j: j["state"] == "RUNNING", system=SYSTEM)
    assert alice.delete(f"{JOBS}/{job['id']}").status_code == 202
    assert finish(alice, job)["state"] == "CANCELLED"


def test_slurm_records_alice_as_the_owner(alice: httpx.Client) -> None:
    """The job is alice's in Slurm's own records: sbatch ran in her login."""
    job = run(alice, "sleep 300")
    wait_for_job(alice, job["id"], lambda j: j["state"] == "RUNNING", system=SYSTEM)
    found = subprocess.run(
        ["squeue", "--noheader", "--format=%u", f"--jobs={job['id']}"],
        capture_output=True,
        text=True,
    )
    assert found.stdout.strip() == "alice"
    alice.delete(f"{JOBS}/{job['id']}")
    assert finish(alice, job)["state"] == "CANCELLED"


def test_a_refused_submit_is_slurms_verdict(alice: httpx.Client) -> None:
    response = alice.post(JOBS, json={"script": "#!/bin/bash\ntrue\n", "partition": "nosuch"})
    assert response.status_code == 422, response.text
    assert "invalid partition" in response.json()["detail"].lower()


def test_partitions_nodes_and_accounts(alice: httpx.Client, bob: httpx.Client) -> None:
    partitions = {p["name"] for p in alice.get(f"{BASE}/partitions").json()}
    assert partitions == {"debug", "batch"}
    nodes = [n["name"] for n in alice.get(f"{BASE}/nodes").json()]
    assert nodes == ["node1", "node2", "node3", "node4"]
    assert {a["account"] for a in alice.get(f"{BASE}/accounts").json()} == {
        "testacct",
        "alphaacct",
    }
    assert [a["user"] for a in bob.get(f"{BASE}/accounts").json()] == ["bob"]
