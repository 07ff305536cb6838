"""The watcher against the real cluster: jobs that left squeue come from sacct, and the
scheduler sees one status query per interval however many clients poll."""

from __future__ import annotations

import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.support.gateway_process import GatewayProcess
from tests.support.jobs import ended, submit, wait_for_job
from tests.support.slurm import SYSTEM, min_job_age

JOBS = f"/api/v1/systems/{SYSTEM}/jobs"


def in_squeue(job_id: str) -> bool:
    out = subprocess.run(
        ["squeue", "--noheader", "--states=all", f"--jobs={job_id}", "--format=%i"],
        capture_output=True,
        text=True,
    ).stdout
    return job_id in out.split()


def test_a_job_that_left_squeue_is_found_in_sacct(
    slurm_gateway: GatewayProcess, alice: httpx.Client
) -> None:
    age = min_job_age()
    assert age <= 60, f"MinJobAge={age}: start the cluster with SLURM_MIN_JOB_AGE=10"
    job = submit(alice, SYSTEM, script="#!/bin/bash\nsleep 1\nexit 3\n")
    slurm_gateway.stop()  # the job ends and leaves squeue while nobody watches
    try:
        deadline = time.monotonic() + age + 90
        while in_squeue(job["id"]):
            assert time.monotonic() < deadline, "the job never left squeue"
            time.sleep(1)
    finally:
        slurm_gateway.start()
    seen = wait_for_job(alice, job["id"], ended, system=SYSTEM)
    assert (seen["state"], seen["exit_code"]) == ("FAILED", 3)
    assert seen["end_time"] is not None


def status_queries(gateway: GatewayProcess, admin: httpx.Client) -> float:
    text = admin.get("/metrics").text
    pattern = rf'hpcgate_scheduler_commands_total{{operation="status",system="{SYSTEM}"}} (\S+)'
    match = re.search(pattern, text)
    return float(match.group(1)) if match else 0.0


def test_many_pollers_one_squeue_per_interval(
    slurm_gateway: GatewayProcess, alice: httpx.Client
) -> None:
    jobs = [submit(alice, SYSTEM, script="#!/bin/bash\nsleep 4\n") for _ in range(5)]
    admin_token = (slurm_gateway.home / "admin-token").read_text().strip()
    with slurm_gateway.client(admin_token) as admin:
        before = status_queries(slurm_gateway, admin)
        started = time.monotonic()

        def poll(index: int) -> int:
            count = 0
            while time.monotonic() - started < 3:
                job_id = jobs[index % len(jobs)]["id"]
                assert alice.get(f"{JOBS}/{job_id}").status_code == 200
                count += 1
            return count

        with ThreadPoolExecutor(20) as pool:
            requests = sum(pool.map(poll, range(20)))
        elapsed = time.monotonic() - started
        queries = status_queries(slurm_gateway, admin) - before
    assert requests > 100
    assert queries <= elapsed / 0.5 + 2, (queries, requests)  # status_interval is 0.5 s
    for job in jobs:
        wait_for_job(alice, job["id"], ended, system=SYSTEM)
