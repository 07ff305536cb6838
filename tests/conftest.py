"""Shared fixtures: one real gateway process for the API tests, tokens for alice and bob."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.accounts import passable, unix_account
from tests.support.gateway_process import GatewayProcess, new_gateway, user_client


@pytest.hookimpl(optionalhook=True)  # a hook of pytest-xdist's
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """``-n N --dist loadscope`` shares the tests as tests/support/scheduling.py says."""
    if config.getvalue("dist") != "loadscope":
        return None
    from tests.support.scheduling import TierScheduling  # xdist is there: it calls this

    return TierScheduling(config, log)


@pytest.fixture(scope="session")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    server = new_gateway(tmp_path_factory.mktemp("gateway"))
    server.start()
    yield server
    server.stop()


alice = user_client("alice", scope="session")
bob = user_client("bob", scope="session")


@pytest.fixture
def gateway_user(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    """A client for a user of its own, whose job list starts empty."""
    with gateway.client(gateway.token(f"u{uuid.uuid4().hex[:10]}")) as client:
        yield client


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A directory alice's jobs work in: as root (where the gateway runs her jobs as her
    account) it is hers, and the directories above it let her pass."""
    if os.geteuid() == 0:
        passable(tmp_path)
        os.chown(tmp_path, unix_account("alice").uid, unix_account("alice").gid)
    return tmp_path
