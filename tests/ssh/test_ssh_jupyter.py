"""A real JupyterLab as a real Slurm job of alice's, reached through the proxy over SSH
``direct-tcpip`` channels (an sshd of the test's own that allows forwarding): the lab page
loads and a kernel runs code over the proxied WebSocket."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.backends import BACKENDS, Backend, ensure_backends, write_jupyter
from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.jupyter_service import (
    JUPYTER_START_SECONDS,
    PREFIX,
    assert_kernel_runs,
    jupyter_config,
)
from tests.support.services import (
    in_state,
    services_gateway,
    wait_replicas,
)
from tests.support.slurm import ensure_cluster
from tests.support.sshd import Sshd, own_sshd

SYSTEM = "remote"


@pytest.fixture(scope="module")
def forwarding_sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    with own_sshd(tmp_path_factory.mktemp("sshd"), forwarding=True) as server:
        yield server


@pytest.fixture(scope="module")
def lab() -> Iterator[Backend]:
    """JupyterLab's script and its token file, in a directory alice can reach."""
    if not (BACKENDS / "venv" / "bin" / "jupyter-lab").exists():
        ensure_backends()
    directory = Path(f"/tmp/hpcgate-lab-{uuid.uuid4().hex[:8]}")
    try:
        yield write_jupyter(directory, base_url=PREFIX, owner="alice")
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def gateway(
    forwarding_sshd: Sshd, lab: Backend, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    if os.geteuid() != 0:
        pytest.skip("the multi-user gateway runs as root")
    ensure_cluster()
    config = f"""
service_interval = 0.3
service_wait_seconds = 60

[systems.{SYSTEM}]
scheduler = "slurm"
transport = "ssh"
status_interval = 0.5
info_cache = 0

{forwarding_sshd.table(SYSTEM)}
[users]
mode = "multi"
{jupyter_config(lab, SYSTEM, 'run_as = "alice"')}"""
    with services_gateway(tmp_path_factory.mktemp("gateway"), config) as server:
        yield server


alice = user_client("alice")


def test_jupyter_runs_code_through_the_proxy_over_ssh(
    gateway: GatewayProcess, alice: httpx.Client, lab: Backend, forwarding_sshd: Sshd
) -> None:
    [replica] = wait_replicas(alice, "lab", in_state("ready"), timeout=JUPYTER_START_SECONDS)
    assert replica["node"].startswith("node")  # a Slurm node, reached at its NodeAddr
    assert lab.token
    page = alice.get(f"{PREFIX}lab", params={"token": lab.token})
    assert page.status_code == 200 and PREFIX in page.text
    assert_kernel_runs(gateway, alice, lab.token)
    log = forwarding_sshd.log.read_text(errors="replace")
    assert "Accepted publickey for alice" in log
