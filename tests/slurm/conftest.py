"""The Slurm tier: a real Slurm cluster (scripts/slurm) behind a real multi-user gateway.

The cluster is started here if it is not running (needs root). In CI (``CI`` set) a
cluster that cannot start fails the run; elsewhere, without root, the tier is skipped.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway_process import GatewayProcess, new_gateway, user_client

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "slurm"
SYSTEM = "cluster"
CONFIG = f"""
max_script_bytes = 65536

[systems.{SYSTEM}]
scheduler = "slurm"
description = "The test cluster of scripts/slurm"
status_interval = 0.5
info_cache = 0

[users]
mode = "multi"
map = {{ "alice@example.org" = "alice", "rooty" = "root" }}
"""


def controller_up() -> bool:
    try:
        done = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0 and " is UP" in done.stdout


def min_job_age() -> int:
    out = subprocess.run(["scontrol", "show", "config"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if line.startswith("MinJobAge"):
            return int(line.split("=", 1)[1].split()[0])
    raise AssertionError("scontrol show config has no MinJobAge")


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    ensure_cluster()


def ensure_cluster() -> None:
    """Start the cluster of scripts/slurm unless it runs (skip or fail if that cannot be)."""
    if controller_up():
        return
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("the Slurm tier must run in CI, and starting a cluster needs root")
        pytest.skip("no Slurm cluster running and not root: run scripts/slurm up as root")
    done = subprocess.run([str(SCRIPT), "up"], capture_output=True, text=True, timeout=900)
    if done.returncode != 0 or not controller_up():
        pytest.fail(f"scripts/slurm up failed:\n{done.stderr[-4000:]}")


@pytest.fixture(scope="session")
def slurm_gateway(
    slurm_cluster: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    if os.geteuid() != 0:
        pytest.skip("the multi-user gateway runs as root")
    server = new_gateway(tmp_path_factory.mktemp("slurm-gateway"), CONFIG)
    server.start()
    yield server
    server.stop()


alice = user_client("alice", "slurm_gateway", scope="session")
bob = user_client("bob", "slurm_gateway", scope="session")
