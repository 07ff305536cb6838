"""Bad input and faults against the real cluster: Slurm's refusals come back as 4xx
problems carrying Slurm's words; a stopped slurmctld is a 503, and hpcgate recovers
when it returns, with no job state lost."""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from hpcgate.accounts import Accounts
from hpcgate.cluster import Cluster
from hpcgate.config import SystemConfig, UsersConfig
from hpcgate.model.commands import Command
from hpcgate.model.jobs import JobSpec
from hpcgate.model.scheduler import SubmitContext
from hpcgate.schedulers.slurm import SlurmScheduler
from hpcgate.transports.local import LocalTransport
from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.jobs import ended, submit, wait_for_job
from tests.support.slurm import CONFIG, SCRIPT, SYSTEM, controller_up

JOBS = f"/api/v1/systems/{SYSTEM}/jobs"
HELLO = "#!/bin/bash\necho hello\n"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"partition": "nope"}, "Invalid partition name specified"),
        ({"account": "nope"}, "Invalid account"),
        ({"account": "alphaacct"}, "Invalid account"),  # alice's account, not bob's
        ({"partition": "batch", "time_limit": "10"}, "Requested time limit is invalid"),
        ({"qos": "nope"}, "Invalid qos specification"),
    ],
)
def test_sbatch_refusals_are_422_with_slurms_message(
    bob: httpx.Client, spec: dict[str, Any], words: str
) -> None:
    before = bob.get(JOBS, params={"limit": 200}).json()["items"]
    response = bob.post(JOBS, json={"script": HELLO, **spec})
    assert response.status_code == 422, response.text
    problem = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert problem["type"].endswith("/scheduler-rejected")
    assert words in problem["detail"] and "sbatch: error" not in problem["detail"]
    assert bob.get(JOBS, params={"limit": 200}).json()["items"] == before  # nothing kept


@pytest.mark.parametrize(
    "spec",
    [
        {"partition": "debug; rm -rf /"},
        {"account": "$(id)"},
        {"array": "0-3;id"},
        {"dependencies": ["afterok:1 && id"]},
        {"name": "bad\nname"},
    ],
)
def test_shell_text_never_reaches_sbatch(bob: httpx.Client, spec: dict[str, Any]) -> None:
    response = bob.post(JOBS, json={"script": HELLO, **spec})
    assert response.status_code == 422, response.text


def _controller(action: str) -> None:
    subprocess.run([str(SCRIPT), action], check=True, capture_output=True, timeout=120)


def _health(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get(f"/api/v1/systems/{SYSTEM}").json())


def _wait_health(client: httpx.Client, healthy: bool, timeout: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (system := _health(client))["healthy"] != healthy:
        assert time.monotonic() < deadline, system
        time.sleep(0.2)
    return system


def test_controller_down_is_503_and_hpcgate_recovers(
    slurm_gateway: GatewayProcess, alice: httpx.Client
) -> None:
    running = submit(alice, SYSTEM, script="#!/bin/bash\nsleep 4\necho survived\n")
    wait_for_job(alice, running["id"], lambda j: j["state"] == "RUNNING", system=SYSTEM)
    _controller("stop-controller")
    try:
        # With a job live, squeue retries for ~9 s; the watcher's ping says "down" sooner.
        system = _wait_health(alice, healthy=False, timeout=6)
        assert system["health_message"]
        response = alice.post(JOBS, json={"script": HELLO})
        assert response.status_code == 503, response.text
        assert response.json()["type"].endswith("/scheduler-unavailable")
        partitions = alice.get(f"/api/v1/systems/{SYSTEM}/partitions")
        assert partitions.status_code == 503, partitions.text
        assert alice.get(f"{JOBS}/{running['id']}").json()["state"] == "RUNNING"  # kept
        time.sleep(5)  # the job ends while the controller is away
    finally:
        _controller("start-controller")
    assert controller_up()
    _wait_health(alice, healthy=True)
    job = wait_for_job(alice, running["id"], ended, system=SYSTEM)
    assert (job["state"], job["exit_code"]) == ("COMPLETED", 0)
    assert alice.get(f"{JOBS}/{running['id']}/output").text == "survived\n"
    after = submit(alice, SYSTEM, script=HELLO)
    assert wait_for_job(alice, after["id"], ended, system=SYSTEM)["state"] == "COMPLETED"


def _slurmctld(sig: str) -> None:
    subprocess.run(["pkill", f"-{sig}", "-x", "slurmctld"], check=True)


def test_a_submit_that_timed_out_is_settled_by_its_tag(
    slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """sbatch reaches a frozen slurmctld and is killed at the timeout (504): whether Slurm
    took the job is unknown. When slurmctld wakes up it creates the job; the watcher finds
    it by its tag, so the job is tracked once, and a retry with the key returns it."""
    config = CONFIG.replace("status_interval = 0.5", "status_interval = 0.5\ncommand_timeout = 2")
    server = new_gateway(tmp_path_factory.mktemp("timeout-gateway"), config)
    server.start()
    try:
        with server.client(server.token("alice")) as alice:
            key = {"Idempotency-Key": "frozen-controller"}
            body = {"script": "#!/bin/bash\necho once\n", "name": "frozen"}
            _slurmctld("STOP")
            try:
                response = alice.post(JOBS, json=body, headers=key)
            finally:
                _slurmctld("CONT")
            assert response.status_code == 504, response.text
            deadline = time.monotonic() + 60
            while (retry := alice.post(JOBS, json=body, headers=key)).status_code == 409:
                assert time.monotonic() < deadline, retry.text
                time.sleep(0.5)
            assert retry.status_code == 200, retry.text  # the job Slurm took, found by tag
            job = wait_for_job(alice, retry.json()["id"], ended, system=SYSTEM)
            assert job["state"] == "COMPLETED"
            listed = alice.get(JOBS, params={"name": "frozen"}).json()["items"]
            assert [j["id"] for j in listed] == [job["id"]]
    finally:
        server.stop()


async def test_a_lost_submit_is_found_after_it_left_squeue(slurm_cluster: None) -> None:
    """A submit whose outcome was unknown is settled by its tag; if that happens after the
    job has finished and left squeue (MinJobAge), sacct's record of its submit line still
    finds it, so a retry with the key does not run it a second time."""
    cluster = Cluster(
        "cluster", SystemConfig(scheduler="slurm"), SlurmScheduler(), LocalTransport()
    )
    alice = Accounts(UsersConfig(), multi=True).lookup("alice", "alice")
    since, tag = datetime.now(UTC), uuid.uuid4().hex
    spec = JobSpec(script="#!/bin/sh\ntrue\n", name="lost-submit")
    job_id = await cluster.submit(spec, SubmitContext(tag, alice.home), alice)
    deadline = time.monotonic() + 90
    while _in_squeue(job_id):
        assert time.monotonic() < deadline, "the job never left squeue"
        await asyncio.sleep(1)
    assert cluster.scheduler.parse_find(await cluster.run("find", _squeue_all()), tag) is None
    assert await cluster.find(tag, since) == job_id  # from sacct
    assert await cluster.find(uuid.uuid4().hex, since) is None
    await cluster.transport.close()


def _in_squeue(job_id: str) -> bool:
    found = subprocess.run(
        ["squeue", "--noheader", "--states=all", "--format=%i"], capture_output=True, text=True
    )
    return job_id in found.stdout.split()


def _squeue_all() -> Command:
    command = SlurmScheduler().find_command("")
    assert command is not None
    return command
