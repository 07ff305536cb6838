"""The Slurm tier: a real Slurm cluster (scripts/slurm) behind a real multi-user gateway.

The cluster is started here if it is not running (needs root). In CI (``CI`` set) a
cluster that cannot start fails the run; elsewhere, without root, the tier is skipped.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.support.gateway_process import GatewayProcess, new_gateway, user_client
from tests.support.slurm import CONFIG, ensure_cluster


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
