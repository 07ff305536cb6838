"""Functions on the real Slurm cluster: a function's worker is a Slurm job of its owner's
account on a node, streams its invocations through the gateway, and a worker job cancelled
mid-stream ends the invocation with WorkerLost within seconds."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.functions import FUNCTIONS, data, delete_all, invoked, register
from tests.support.functions import SLOW_WHO as SLOW
from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.slurm import CONFIG, SYSTEM, services_config, slurm_services_gateway

#: A function's worker script embeds hpcgate's worker (some 60 KiB): room for it.
FUNCTION_CONFIG = services_config(
    base=CONFIG.replace("max_script_bytes = 65536", "max_script_bytes = 262144"), wait=120
)


@pytest.fixture(scope="module")
def gateway(
    slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    home = tmp_path_factory.mktemp("slurm-functions")
    with slurm_services_gateway(home, FUNCTION_CONFIG) as server:
        try:
            yield server
        finally:  # before the services are stopped: a pool is deleted with its function
            with server.client(server.token("alice")) as client:
                delete_all(client, SYSTEM)


alice = user_client("alice")


def _squeue(job_id: str) -> str:
    """``user name`` of the job, as Slurm has it."""
    argv = ["squeue", "-h", "-j", job_id, "-o", "%u %j"]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30).stdout.strip()


def test_a_worker_is_a_slurm_job_of_the_owner_and_streams(alice: httpx.Client) -> None:
    name = register(alice, SLOW, system=SYSTEM, time_limit=600)
    with invoked(alice, name, {"count": 5, "pause": 0.01}) as (_, events):
        seen = list(events)
    assert [data(e)["i"] for e in seen[:-1]] == list(range(5))
    assert (seen[-1].event, data(seen[-1])) == ("result", "done")
    [worker] = alice.get(f"{FUNCTIONS}/{name}").json()["workers"]
    user, job = _squeue(worker["job_id"]).split()
    assert user == "alice" and job.startswith(f"hpcgate-fn.{name}.")
    assert job.endswith(f"-{worker['port']}")


def test_a_worker_cancelled_mid_stream_is_an_error_within_seconds(alice: httpx.Client) -> None:
    name = register(alice, SLOW, system=SYSTEM, time_limit=600)
    with invoked(alice, name, {"count": 10000, "pause": 0.05}) as (_, events):
        next(events)
        [worker] = alice.get(f"{FUNCTIONS}/{name}").json()["workers"]
        cancelled = time.monotonic()
        subprocess.run(["scancel", worker["job_id"]], check=True, timeout=30)
        final = next(e for e in events if e.event != "output")
    assert time.monotonic() - cancelled < 15
    assert final.event == "error" and data(final)["type"] == "WorkerLost"
