"""Status routes against the real cluster: health, partitions, nodes, reservations,
accounts (associations) per caller."""

from __future__ import annotations

import httpx

from tests.support.slurm import SYSTEM

BASE = f"/api/v1/systems/{SYSTEM}"


def test_system_is_healthy_slurm(alice: httpx.Client) -> None:
    system = alice.get(BASE).json()
    assert (system["scheduler"], system["healthy"]) == ("slurm", True)


def test_partitions(alice: httpx.Client) -> None:
    partitions = {p["name"]: p for p in alice.get(f"{BASE}/partitions").json()}
    assert set(partitions) == {"debug", "batch"}
    assert partitions["debug"]["default"] and not partitions["batch"]["default"]
    assert partitions["batch"]["max_time"] == 300 and partitions["debug"]["max_time"] is None
    assert partitions["debug"]["nodes"] == ["node1", "node2", "node3", "node4"]


def test_nodes(alice: httpx.Client) -> None:
    nodes = alice.get(f"{BASE}/nodes").json()
    assert [n["name"] for n in nodes] == ["node1", "node2", "node3", "node4"]
    assert all(n["cpus"] >= 1 and n["memory"] > 0 and n["gpus"] == 0 for n in nodes)
    assert all(set(n["partitions"]) == {"debug", "batch"} for n in nodes)


def test_reservations(alice: httpx.Client) -> None:
    (maint,) = alice.get(f"{BASE}/reservations").json()
    assert (maint["name"], maint["nodes"], maint["users"]) == ("maint", ["node4"], ["alice"])


def test_accounts_are_the_callers_own(alice: httpx.Client, bob: httpx.Client) -> None:
    mine = {a["account"]: a for a in alice.get(f"{BASE}/accounts").json()}
    assert set(mine) == {"testacct", "alphaacct"}
    assert mine["testacct"]["default"] and mine["testacct"]["user"] == "alice"
    theirs = bob.get(f"{BASE}/accounts").json()
    assert [(a["account"], a["user"]) for a in theirs] == [("testacct", "bob")]


def test_embedded_systems_have_no_partitions(alice: httpx.Client) -> None:
    response = alice.get("/api/v1/systems/nosuch/partitions")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
