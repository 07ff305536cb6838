"""Two real gateway processes on one real PostgreSQL database and the real Slurm cluster:
one leads (whichever took the lock first) and runs the service controller, the other only
routes to the replicas the leader started (each gateway picks ports from its own range, so
a replica's port says which one started it); killed with SIGKILL, the leader's place is
taken within the bound, and the new leader keeps the replica it finds rather than starting
another. Started at once on an empty database, they migrate it in turn."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.postgres import drop_database_now, new_database_now
from tests.support.services import SERVICES, backend_script, stop_services, wait_replicas
from tests.support.slurm import SYSTEM, services_config

pytestmark = pytest.mark.postgres
FIRST_PORTS, SECOND_PORTS = (21000, 21499), (21500, 21999)
LEADER_SECONDS = 0.5


def _config(database_url: str, ports: tuple[int, int]) -> str:
    top = f'database_url = "{database_url}"\nleader_seconds = {LEADER_SECONDS}\n'
    return top + f"service_ports = [{ports[0]}, {ports[1]}]\n" + services_config()


@pytest.fixture(scope="module")
def database_url(slurm_cluster: None) -> Iterator[str]:
    if os.geteuid() != 0:
        pytest.skip("the multi-user gateway runs as root")
    url = new_database_now()
    yield url
    drop_database_now(url)


@pytest.fixture(scope="module")
def pair(
    database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[list[GatewayProcess], str, str]]:
    """Two gateways on one database, started at once (either may lead), a token of
    alice's and the admin's (only an admin's token is told which gateway leads)."""
    gateways = [
        new_gateway(tmp_path_factory.mktemp(name), _config(database_url, ports))
        for name, ports in (("first", FIRST_PORTS), ("second", SECOND_PORTS))
    ]
    try:
        with ThreadPoolExecutor(2) as starting:
            list(starting.map(GatewayProcess.start, gateways))
        alice = gateways[0].token("alice")
        admin = (
            next(g.home / "admin-token" for g in gateways if (g.home / "admin-token").exists())
            .read_text()
            .strip()
        )
        try:
            yield gateways, alice, admin
        finally:
            live = [g for g in gateways if g.process is not None]
            stop_services(live[0].url, admin, [alice])
    finally:
        for gateway in gateways:
            gateway.stop()


def _health(gateway: GatewayProcess, admin: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {admin}"}
    found: dict[str, Any] = httpx.get(
        f"{gateway.url}/api/v1/health", headers=headers, timeout=10
    ).json()
    return found


def _within(ports: tuple[int, int], replica: dict[str, Any]) -> bool:
    port = int(replica["port"])
    return ports[0] <= port <= ports[1]


def test_one_leads_the_other_follows_and_takes_over_when_the_leader_is_killed(
    pair: tuple[list[GatewayProcess], str, str],
) -> None:
    gateways, token, admin = pair
    deadline = time.monotonic() + 10
    while not _settled(healths := [_health(g, admin) for g in gateways]):
        assert time.monotonic() < deadline, f"no one leader: {healths}"
        time.sleep(0.1)
    first_leads = healths[0]["leads"]
    leader, follower = gateways if first_leads else gateways[::-1]
    leader_ports, follower_ports = (FIRST_PORTS, SECOND_PORTS)[:: 1 if first_leads else -1]
    follower_name = healths[1 if first_leads else 0]["gateway"]

    name = f"s{uuid.uuid4().hex[:8]}"
    body = {"name": name, "system": SYSTEM, "script": backend_script()}
    with follower.client(token) as alice:  # asked of the follower
        made = alice.post(SERVICES, json={**body, "min_replicas": 1, "max_replicas": 1})
        assert made.status_code == 201, made.text
        [kept] = wait_replicas(alice, name, _ready(1), timeout=120)
        assert _within(leader_ports, kept), kept  # the leader started it, not the follower
        answer = alice.get(f"{SERVICES}/{name}/proxy/pid")  # the follower routes to it
        assert answer.status_code == 200 and answer.json()["port"] == kept["port"]

        leader.stop(signal.SIGKILL)
        killed = time.monotonic()
        while not _health(follower, admin)["leads"]:
            assert time.monotonic() - killed < 15, "the follower never took over"
            time.sleep(0.1)
        assert _health(follower, admin)["leader"] == follower_name

        scaled = alice.patch(f"{SERVICES}/{name}", json={"min_replicas": 2, "max_replicas": 2})
        assert scaled.status_code == 200, scaled.text
        both = wait_replicas(alice, name, _ready(2), timeout=120)
        assert len(both) == 2 and kept["id"] in {r["id"] for r in both}  # kept, not doubled
        [added] = [r for r in both if r["id"] != kept["id"]]
        assert _within(follower_ports, added)  # started by the new leader
        assert alice.get(f"{SERVICES}/{name}/proxy/pid").status_code == 200


def _settled(healths: list[dict[str, Any]]) -> bool:
    """Exactly one gateway leads, and both name it."""
    leading = [h["gateway"] for h in healths if h["leads"]]
    return len(leading) == 1 and all(h["leader"] == leading[0] for h in healths)


def _ready(count: int) -> Any:
    return lambda found: sum(r["state"] == "ready" for r in found) == count
