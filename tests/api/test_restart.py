"""The gateway can stop and start while jobs are queued or running: none is lost or rerun."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from tests.support.accounts import give
from tests.support.gateway_process import new_gateway
from tests.support.jobs import ended, submit, wait_for_job

ONE_SLOT = """
[systems.local]
scheduler = "embedded"
status_interval = 0.2
slots = 1
"""
JOBS = "/api/v1/systems/local/jobs"


@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL])
def test_jobs_survive_a_gateway_restart(tmp_path: Path, how: int) -> None:
    server = new_gateway(tmp_path / "home", ONE_SLOT)
    server.start()
    token = server.token("alice")
    script = "#!/bin/bash\necho run >> runs-$HPCGATE_JOB_ID\nsleep 2\nexit 5"
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    give(jobs, "alice")  # a root gateway runs alice's jobs as her account
    with server.client(token) as client:
        running = submit(client, script=script, working_directory=str(jobs))
        queued = submit(client, script=script, working_directory=str(jobs))
        wait_for_job(client, running["id"], lambda j: j["state"] == "RUNNING")
    server.stop(how)
    server.start()
    try:
        with server.client(token) as client:
            for job in (running, queued):
                done = wait_for_job(client, job["id"], ended)
                assert (done["state"], done["exit_code"]) == ("FAILED", 5)
                assert (jobs / f"runs-{job['id']}").read_text() == "run\n"
            assert len(client.get(JOBS).json()["items"]) == 2
    finally:
        server.stop()


def test_jobs_finishing_while_the_gateway_is_down_are_recorded(tmp_path: Path) -> None:
    server = new_gateway(tmp_path / "home")
    server.start()
    token = server.token("alice")
    with server.client(token) as client:
        job = submit(client, script="#!/bin/bash\nsleep 1\necho finished")
        wait_for_job(client, job["id"], lambda j: j["state"] == "RUNNING")
    server.stop(signal.SIGKILL)
    time.sleep(2)  # the job ends while nobody watches
    server.start()
    try:
        with server.client(token) as client:
            done = wait_for_job(client, job["id"], ended)
            assert done["state"] == "COMPLETED"
            assert client.get(f"{JOBS}/{job['id']}/output").text == "finished\n"
    finally:
        server.stop()


def test_a_poisoned_job_stops_neither_the_others_nor_a_restart(tmp_path: Path) -> None:
    """A home where the scheduler reports a number no store holds (an engine that took
    ``#SBATCH -t 99999999999999999999``, as hpcgate's did before it bounded time limits):
    the gateway starts, every job progresses, the bad number reads as unknown."""
    server = new_gateway(tmp_path / "home", ONE_SLOT)
    server.start()
    token = server.token("alice")
    with server.client(token) as client:
        poisoned = submit(client, script="#!/bin/bash\nsleep 1")
        queued = submit(client, script="#!/bin/bash\necho queued")
    server.stop(signal.SIGKILL)
    spool = tmp_path / "home" / "systems" / "local" / "spool"
    document = spool / "jobs" / poisoned["id"] / "job.json"
    limit = '"time_limit":5999999999999999999940'  # 99999999999999999999 minutes
    document.write_text(document.read_text().replace('"time_limit":null', limit))
    (spool / "cache.json").unlink(missing_ok=True)
    assert limit in document.read_text()
    server.start()
    try:
        with server.client(token) as client:
            later = submit(client, script="#!/bin/bash\necho later")
            for job in (poisoned, queued, later):
                assert wait_for_job(client, job["id"], ended)["state"] == "COMPLETED"
            assert client.get(f"{JOBS}/{poisoned['id']}").json()["time_limit"] is None
        server.stop()
        server.start()  # and the home still starts
        with server.client(token) as client:
            assert len(client.get(JOBS).json()["items"]) == 3
        assert server.log().count("out of range: read as unknown") == 1
    finally:
        server.stop()
