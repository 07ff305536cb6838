"""Functions over the SSH transport: a gateway whose only system is the Slurm cluster behind
the test sshd, as the functional account (``identity = "forced"``; the shared sshd forwards
nothing, so the gateway reaches its workers through hpcgate-forced's relay). A function's
worker is a Slurm job started over SSH; its invocations stream through the relay, and a
worker job killed mid-stream ends the invocation with an error event within seconds."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.ssh.test_ssh_forced import SYSTEM, config, slurm_association
from tests.support.functions import FUNCTIONS, data, delete_all, invoked, register
from tests.support.functions import SLOW_WHO as SLOW
from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.services import services_gateway
from tests.support.slurm import ensure_cluster, services_config
from tests.support.sshd import FUNCTIONAL, FunctionalAccount, Sshd


@pytest.fixture(scope="module")
def gateway(
    sshd: Sshd, functional_account: FunctionalAccount, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    if os.geteuid() != 0:
        pytest.skip("the gateway's Slurm account setup needs root")
    ensure_cluster()
    slurm_association(FUNCTIONAL)
    workdir = functional_account.home / f"hpcgate-functions-{uuid.uuid4().hex[:8]}"
    base = config(sshd, functional_account.key(), workdir, stream="relay")
    # A function's worker script embeds hpcgate's worker (some 60 KiB): room for it.
    base = base.replace("max_script_bytes = 65536", "max_script_bytes = 262144")
    home = tmp_path_factory.mktemp("ssh-functions")
    try:
        with services_gateway(home, services_config(base=base, wait=120)) as server:
            try:
                yield server
            finally:  # before the services are stopped: a pool is deleted with its function
                with server.client(server.token("alice")) as client:
                    delete_all(client, SYSTEM, timeout=120)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


alice = user_client("alice")


def test_a_function_streams_over_ssh_from_a_slurm_worker(alice: httpx.Client) -> None:
    name = register(alice, SLOW, system=SYSTEM, time_limit=600)
    with invoked(alice, name, {"count": 5, "pause": 0.01}) as (key, events):
        seen = list(events)
    assert [(e.event, data(e)["i"]) for e in seen[:-1]] == [("output", i) for i in range(5)]
    assert {data(e)["user"] for e in seen[:-1]} == {FUNCTIONAL}  # run as the forced account
    assert [e.id for e in seen] == ["1", "2", "3", "4", "5", "6"]
    assert (seen[-1].event, data(seen[-1])) == ("result", "done")
    shown = alice.get(f"{FUNCTIONS}/{name}/invocations/{key}").json()
    assert (shown["state"], shown["events"]) == ("succeeded", 6)
    whole = alice.post(f"{FUNCTIONS}/{name}/invoke", json={"count": 2, "pause": 0})
    assert whole.status_code == 200, whole.text
    assert [o["i"] for o in whole.json()["output"]] == [0, 1]
    assert whole.json()["result"] == "done"


def test_a_worker_job_killed_mid_stream_is_an_error_within_seconds(alice: httpx.Client) -> None:
    name = register(alice, SLOW, system=SYSTEM, time_limit=600)
    with invoked(alice, name, {"count": 10000, "pause": 0.05}) as (key, events):
        assert next(events).event == "output"
        [worker] = alice.get(f"{FUNCTIONS}/{name}").json()["workers"]
        killed = time.monotonic()
        subprocess.run(["scancel", "--signal=KILL", worker["job_id"]], check=True, timeout=30)
        final = next(e for e in events if e.event != "output")
        rest = list(events)
    assert time.monotonic() - killed < 15
    assert final.event == "error" and data(final)["type"] == "WorkerLost"
    assert rest == []
    shown = alice.get(f"{FUNCTIONS}/{name}/invocations/{key}").json()
    assert shown["state"] == "failed" and shown["error"]["type"] == "WorkerLost"
