"""Retention on a real gateway: its loop forgets each function's ended invocations beyond
``[functions] keep_invocations``, never a running one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.functions.conftest import CONFIG
from tests.support.functions import FUNCTIONS, delete_all, invoked, register, wait_workers
from tests.support.gateway_process import GatewayProcess
from tests.support.services import services_gateway

RETENTION = """
[functions]
keep_invocations = 2
prune_seconds = 0.3
"""
SLOW = "import time\ndef f(n):\n    for i in range(n):\n        time.sleep(0.05)\n        yield i\n"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with services_gateway(tmp_path_factory.mktemp("gateway"), CONFIG + RETENTION) as server:
        try:
            yield server
        finally:
            with server.client(server.token("alice")) as client:
                delete_all(client)


def test_only_the_newest_ended_invocations_are_kept(
    gateway: GatewayProcess, tmp_path: Path
) -> None:
    with gateway.client(gateway.token("alice")) as alice:
        name = register(alice, SLOW, min_workers=1)
        wait_workers(alice, name)
        with invoked(alice, name, {"n": 1000}, detach="true") as (running, events):
            next(events)
        ended = [invoke(alice, name) for _ in range(4)]
        deadline = time.monotonic() + 20
        while len(kept := listed(alice, name)) > 3:
            assert time.monotonic() < deadline, kept
            time.sleep(0.1)
        assert kept == {running: "running", ended[3]: "succeeded", ended[2]: "succeeded"}
        time.sleep(1)  # rounds later: the same
        assert listed(alice, name) == kept


def invoke(client: httpx.Client, name: str) -> str:
    answer = client.post(f"{FUNCTIONS}/{name}/invoke", json={"n": 1})
    assert answer.json()["state"] == "succeeded", answer.text
    return str(answer.json()["id"])


def listed(client: httpx.Client, name: str) -> dict[str, str]:
    found = client.get(f"{FUNCTIONS}/{name}/invocations").json()
    return {each["id"]: each["state"] for each in found}
