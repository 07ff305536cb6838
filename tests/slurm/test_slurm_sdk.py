"""The SDK and the CLI against the real Slurm cluster, through the multi-user gateway.

What the SDK tier checks on the embedded scheduler, here once more on Slurm as alice and
bob: jobs end with Slurm's own verdicts, follow streams a real job's output, the status
routes answer from slurmctld, files move as alice, and the Executor drives Slurm jobs.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import os
import pwd
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from hpcgate import Client, Executor
from hpcgate.client import JobFailed
from hpcgate.model.errors import Forbidden, NotFound
from hpcgate.model.jobs import JobState
from tests.support.gateway_process import GatewayProcess
from tests.support.slurm import SYSTEM


@pytest.fixture(scope="module")
def hpc(slurm_gateway: GatewayProcess) -> Iterator[Client]:
    with Client(slurm_gateway.url, token=slurm_gateway.token("alice")) as client:
        yield client


@pytest.fixture(scope="module")
def hpc_bob(slurm_gateway: GatewayProcess) -> Iterator[Client]:
    with Client(slurm_gateway.url, token=slurm_gateway.token("bob")) as client:
        yield client


def script(body: str) -> str:
    return f"#!/bin/bash\n{body}\n"


def test_a_job_runs_as_alice_and_completes(hpc: Client) -> None:
    job = hpc.submit(SYSTEM, script=script("id -un"), name="sdk-hello", time_limit="00:05:00")
    done = hpc.wait(SYSTEM, job.id, timeout=120, check=True)
    assert done.state is JobState.COMPLETED and done.exit_code == 0
    assert hpc.output(SYSTEM, job.id).strip() == "alice"


def test_exit_7_is_a_failed_job_with_its_code(hpc: Client) -> None:
    job = hpc.submit(SYSTEM, script=script("exit 7"))
    with pytest.raises(JobFailed) as failed:
        hpc.wait(SYSTEM, job.id, timeout=120, check=True)
    assert failed.value.job.state is JobState.FAILED and failed.value.job.exit_code == 7


def test_follow_streams_a_slurm_job_s_output(hpc: Client) -> None:
    job = hpc.submit(SYSTEM, script=script("for i in 1 2 3; do echo line $i; sleep 1; done"))
    text = "".join(hpc.follow(SYSTEM, job.id))
    assert text.splitlines() == ["line 1", "line 2", "line 3"]


def test_bob_cannot_see_alice_s_job(hpc: Client, hpc_bob: Client) -> None:
    job = hpc.submit(SYSTEM, script=script("sleep 30"))
    try:
        with pytest.raises(NotFound):
            hpc_bob.job(SYSTEM, job.id)
        with pytest.raises(NotFound):
            hpc_bob.cancel(SYSTEM, job.id)
        assert job.id not in {j.id for j in hpc_bob.jobs(SYSTEM)}
    finally:
        hpc.cancel(SYSTEM, job.id)
    assert hpc.wait(SYSTEM, job.id, timeout=120).state is JobState.CANCELLED


def test_status_comes_from_slurm(hpc: Client) -> None:
    partitions = {p.name for p in hpc.partitions(SYSTEM)}
    assert len(partitions) >= 2
    nodes = hpc.nodes(SYSTEM)
    assert {n.name for n in nodes} >= {"node1", "node2"}
    assert any(a.account == "alphaacct" for a in hpc.accounts(SYSTEM))


def test_executor_runs_slurm_jobs(hpc: Client) -> None:
    specs = [{"script": script(f"echo {n}"), "name": f"sdk-map-{n}"} for n in range(3)]
    with Executor(hpc, SYSTEM, poll=0.5) as pool:
        finished = list(pool.map(specs, timeout=180))
        failing = pool.submit({"script": script("exit 4")})
        concurrent.futures.wait([failing], timeout=120)
    assert [job.name for job in finished] == ["sdk-map-0", "sdk-map-1", "sdk-map-2"]
    assert all(job.state is JobState.COMPLETED for job in finished)
    error = failing.exception(timeout=0)
    assert isinstance(error, JobFailed) and error.job.exit_code == 4


def test_files_move_as_alice(hpc: Client, tmp_path: Path) -> None:
    home = Path(pwd.getpwnam("alice").pw_dir)
    name = f"sdk-{os.urandom(4).hex()}.bin"
    data = os.urandom(3 << 20)
    local = tmp_path / "up.bin"
    local.write_bytes(data)
    try:
        sent = hpc.upload(SYSTEM, local, f"{home}/{name}", chunk_size=1 << 20)
        assert sent.sha256 == hashlib.sha256(data).hexdigest()
        assert (home / name).stat().st_uid == pwd.getpwnam("alice").pw_uid
        back = hpc.download(SYSTEM, f"{home}/{name}", tmp_path / "down.bin")
        assert back.read_bytes() == data
        with pytest.raises(Forbidden):
            hpc.ls(SYSTEM, pwd.getpwnam("bob").pw_dir)
    finally:
        (home / name).unlink(missing_ok=True)


def test_the_cli_submits_and_fails_with_the_job(
    slurm_gateway: GatewayProcess, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "HPCGATE_URL": slurm_gateway.url,
        "HPCGATE_TOKEN": slurm_gateway.token("alice"),
        "HPCGATE_CONFIG_DIR": str(tmp_path / "config"),
    }
    good, bad = tmp_path / "good.sh", tmp_path / "bad.sh"
    good.write_text(script("echo from-slurm"))
    bad.write_text(script("exit 3"))
    cli = [sys.executable, "-m", "hpcgate", "jobs", "submit", "--system", SYSTEM]
    ok = subprocess.run([*cli, "--follow", str(good)], env=env, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "from-slurm" in ok.stdout
    failed = subprocess.run([*cli, "--wait", str(bad)], env=env, capture_output=True, text=True)
    assert failed.returncode == 1, failed.stdout + failed.stderr
