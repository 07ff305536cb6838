"""The embedded system answers the status routes with what it has: its job slots as one
node in one partition (with the jobs running on it), no reservations, no associations."""

from __future__ import annotations

import socket
import time

import httpx

from tests.support.gateway_process import GatewayProcess
from tests.support.jobs import wait_for_job

SLOTS = 4  # TEST_CONFIG's


def test_the_machine_is_one_idle_node_in_one_partition(gateway_user: httpx.Client) -> None:
    partitions = gateway_user.get("/api/v1/systems/local/partitions")
    assert partitions.status_code == 200, partitions.text
    host = socket.gethostname()
    assert partitions.json() == [
        {
            "name": "local",
            "state": "UP",
            "default": True,
            "nodes": [host],
            "total_cpus": SLOTS,
            "total_nodes": 1,
            "max_time": None,
            "default_time": None,
            "max_nodes": 1,
        }
    ]
    [node] = gateway_user.get("/api/v1/systems/local/nodes").json()
    assert (node["name"], node["partitions"], node["cpus"]) == (host, ["local"], SLOTS)
    assert node["memory"] > 0 and node["gpus"] == 0


def test_a_running_job_shows_on_the_node(gateway: GatewayProcess) -> None:
    with gateway.client(gateway.token("statuswatcher")) as client:
        job = client.post(
            "/api/v1/systems/local/jobs", json={"script": "#!/bin/sh\nsleep 30\n"}
        ).json()
        wait_for_job(client, job["id"], lambda seen: seen["state"] == "RUNNING")
        try:
            deadline = time.monotonic() + 30  # the listing is cached for info_cache seconds
            node = client.get("/api/v1/systems/local/nodes").json()[0]
            while node["cpus_allocated"] == 0 and time.monotonic() < deadline:
                time.sleep(0.5)
                node = client.get("/api/v1/systems/local/nodes").json()[0]
            assert node["cpus_allocated"] >= 1
            assert node["state"] in {"MIXED", "ALLOCATED"}
        finally:
            client.delete(f"/api/v1/systems/local/jobs/{job['id']}")


def test_no_reservations_and_no_associations(gateway_user: httpx.Client) -> None:
    for route in ("reservations", "accounts"):
        answer = gateway_user.get(f"/api/v1/systems/local/{route}")
        assert (answer.status_code, answer.json()) == (200, []), route
