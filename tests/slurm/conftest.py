"""The Slurm tier: a real Slurm cluster (scripts/slurm) behind a real multi-user gateway.

The cluster is started here if it is not running (needs root). In CI (``CI`` set) a
cluster that cannot start fails the run; elsewhere, without root, the tier is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess, new_gateway, user_client
from tests.support.jobs import submit
from tests.support.slurm import CONFIG, SYSTEM, ensure_cluster


@pytest.fixture(scope="session")
def slurm_cluster() -> None:
    ensure_cluster()


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


@pytest.fixture(scope="session")
def timeout_job(alice: httpx.Client) -> Iterator[dict[str, Any]]:
    """A job of Slurm's shortest time limit (a minute) that sleeps longer: slurmctld's
    check, every 30 s, ends it TIMEOUT 60-90 s after its start. test_slurm_jobs's
    test_timeout reads that end; the job is submitted as the tier starts, so that the
    tier's other tests run while it waits."""
    job = submit(alice, SYSTEM, script="#!/bin/bash\nsleep 600\n", name="too-long", time_limit=60)
    yield job
    alice.delete(f"/api/v1/systems/{SYSTEM}/jobs/{job['id']}")  # ended already, normally


@pytest.fixture(scope="session", autouse=True)
def _timeout_job_early(request: pytest.FixtureRequest) -> None:
    """Starts ``timeout_job`` with the tier's first test (where the gateway can run)."""
    if os.geteuid() == 0:
        request.getfixturevalue("timeout_job")
