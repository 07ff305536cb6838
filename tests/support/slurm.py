"""The test Slurm cluster of ``scripts/slurm``: the gateway config that reaches it, whether its
controller answers, and starting it when a tier needs it (skipped without root, failed in CI)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.gateway_process import GatewayProcess
from tests.support.services import services_gateway

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


def services_config(*services: str, wait: float = 60, base: str = CONFIG) -> str:
    """``base`` (the cluster's config) for a gateway whose controller serves these
    ``[services.*]`` tables (a request waits up to ``wait`` seconds for a ready replica)."""
    return f"service_interval = 0.3\nservice_wait_seconds = {wait:g}\n{base}" + "".join(services)


@contextmanager
def slurm_services_gateway(home: Path, config: str) -> Iterator[GatewayProcess]:
    """:func:`~tests.support.services.services_gateway` on the cluster: as root only, since
    only a root gateway is multi-user and runs the replicas as the users' accounts."""
    if os.geteuid() != 0:
        pytest.skip("the multi-user gateway runs as root")
    with services_gateway(home, config) as server:
        yield server


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
