"""The outbound-agent tier: ``hpcgate-agent`` (as root) inside the network namespace of
``scripts/netns``, which it can only dial out of, serving the real Slurm cluster of
``scripts/slurm`` to a gateway on this machine that cannot reach into the namespace.

The namespace and the cluster are made here if they are not there (needs root). In CI
(``CI`` set) either one missing fails the run; elsewhere, without root, the tier is skipped.
The namespace is shared machine state: it is made under ``/tmp/hpcgate-shared-tier.lock``.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.agent_process import AgentProcess
from tests.support.gateway_process import GatewayProcess, cli, new_gateway, user_client
from tests.support.slurm import ensure_cluster

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "netns"
LOCK = "/tmp/hpcgate-shared-tier.lock"
NAME = os.environ.get("HPCGATE_NETNS", "hpcgate-agent")
HOST_ADDR = "10.213.0.1"  # the gateway as the namespace reaches it (scripts/netns)
SYSTEM = "cluster"
CONFIG = f"""
host = "0.0.0.0"  # the namespace reaches this machine at {HOST_ADDR}
max_script_bytes = 65536

[systems.{SYSTEM}]
scheduler = "slurm"
transport = "agent"
description = "The test cluster of scripts/slurm, through an agent in a namespace"
status_interval = 0.5
info_cache = 0

[users]
mode = "multi"
map = {{ "alice@example.org" = "alice" }}
"""


def namespace_up() -> bool:
    done = subprocess.run([str(SCRIPT), "status"], capture_output=True, timeout=60)
    return done.returncode == 0


def ensure_namespace() -> None:
    """Make the namespace unless it is up (skip or fail as the module says)."""
    if namespace_up():
        return
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the netns tier must run in CI, and making the namespace needs root")
        pytest.skip("no agent namespace and not root: run scripts/netns up as root")
    done = subprocess.run(
        ["flock", LOCK, str(SCRIPT), "up"], capture_output=True, text=True, timeout=600
    )
    if done.returncode != 0 or not namespace_up():
        pytest.fail(f"scripts/netns up failed:\n{done.stderr[-4000:]}")


@pytest.fixture(scope="session")
def netns_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    ensure_namespace()
    ensure_cluster()
    if os.geteuid() != 0:
        pytest.skip("the multi-user gateway and a root agent run as root")
    server = new_gateway(tmp_path_factory.mktemp("netns-gateway"), CONFIG)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def netns_agent(
    netns_gateway: GatewayProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[AgentProcess]:
    """The agent in the namespace, connected (the gateway shows it) before any test runs."""
    token = cli(netns_gateway.home, "agent-token", "create", SYSTEM).stdout.splitlines()[-1]
    directory = tmp_path_factory.mktemp("netns-agent")
    agent = AgentProcess(
        directory, f"http://{HOST_ADDR}:{netns_gateway.port}", token, ("{home}",),
        directory / "unused", scheduler="slurm", wrapper=("ip", "netns", "exec", NAME),
    )  # fmt: skip
    agent.start()
    try:
        with netns_gateway.client(netns_gateway.token("alice")) as client:
            deadline = time.monotonic() + 60
            while not _connected(client):
                assert time.monotonic() < deadline, f"the agent never connected:\n{agent.log()}"
                time.sleep(0.2)
        yield agent
    finally:
        agent.stop()


def _connected(client: httpx.Client) -> bool:
    answer = client.get(f"/api/v1/systems/{SYSTEM}")
    assert answer.status_code == 200, answer.text
    return bool(answer.json()["agents"])


alice = user_client("alice", "netns_gateway", scope="session")
