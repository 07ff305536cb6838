"""The proxy end to end through hpcgate-forced's relay: a gateway whose only system is the
Slurm cluster over the test sshd as the functional account (``identity = "forced"``,
``stream = "relay"``; the shared sshd forwards nothing) runs declared services' replicas
as Slurm jobs: plain, streamed and uploaded requests reach them through the relay, and a
replica cancelled under load fails no new request."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.ssh.test_ssh_forced import SYSTEM, config, slurm_association
from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.service_faults import cancel_under_load
from tests.support.services import (
    SERVICES,
    in_state,
    service_table,
    services_gateway,
    wait_replicas,
)
from tests.support.slurm import ensure_cluster, services_config
from tests.support.sshd import FORCED, FUNCTIONAL, FunctionalAccount, Sshd

PROXY = f"{SERVICES}/relayed/proxy"


@pytest.fixture(scope="module")
def gateway(
    sshd: Sshd, functional_account: FunctionalAccount, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    if os.geteuid() != 0:
        pytest.skip("the gateway's Slurm account setup needs root")
    ensure_cluster()
    slurm_association(FUNCTIONAL)
    workdir = functional_account.home / f"hpcgate-relayed-{uuid.uuid4().hex[:8]}"
    base = config(sshd, functional_account.key(), workdir, stream="relay")
    settings = {"users": ["*"], "time_limit": 600}
    services = (
        service_table("relayed", SYSTEM, min_replicas=1, max_replicas=1, **settings),
        service_table("pair", SYSTEM, min_replicas=2, max_replicas=2, **settings),
    )
    home = tmp_path_factory.mktemp("relayed-gateway")
    try:
        with services_gateway(home, services_config(*services, base=base)) as server:
            yield server
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


alice = user_client("alice")


def _relays(port: int) -> list[int]:
    """The hpcgate-forced processes relaying to the port (their ``SSH_ORIGINAL_COMMAND``)."""
    wanted = f"SSH_ORIGINAL_COMMAND=relay 127.0.0.1 {port}".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if str(FORCED).encode() in argv and wanted in (proc / "environ").read_bytes().split(
                b"\0"
            ):
                found.append(int(proc.name))
        except OSError:  # not a process, or one that ended meanwhile
            continue
    return found


def test_requests_reach_the_replica_through_the_relay(alice: httpx.Client) -> None:
    [replica] = wait_replicas(alice, "relayed", in_state("ready"), timeout=120)
    answer = alice.get(f"{PROXY}/pid")
    assert answer.status_code == 200, answer.text
    assert answer.json()["port"] == replica["port"]
    assert _relays(replica["port"])  # the pooled connections are relays
    pieces = [os.urandom(1 << 16) for _ in range(16)]
    echoed = alice.post(f"{PROXY}/echo", content=iter(pieces))  # chunked, both ways
    assert echoed.status_code == 200 and echoed.content == b"".join(pieces)


def test_a_streamed_answer_comes_through_the_relay_as_it_is_sent(alice: httpx.Client) -> None:
    [replica] = wait_replicas(alice, "relayed", in_state("ready"), timeout=120)
    arrived = []
    params = {"n": 5, "delay": 0.3}
    with alice.stream("GET", f"{PROXY}/stream", params=params) as answer:
        assert answer.status_code == 200
        for line in answer.iter_lines():
            arrived.append(time.monotonic())
            assert line.startswith(f"chunk {len(arrived) - 1} ")
            assert _relays(replica["port"])
    assert len(arrived) == 5
    assert arrived[-1] - arrived[0] > 0.9  # each chunk came when sent, not all at the end


def test_a_replica_cancelled_under_load_fails_no_new_request(
    gateway: GatewayProcess, alice: httpx.Client
) -> None:
    """As on Slurm reached directly, through relays: a dead replica's pooled relays must
    not take new requests either."""
    cancel_under_load(gateway, alice, "pair")
