"""Per-user limits on services, a port another account took, and a service that cannot
run: through real gateways on the embedded scheduler, with real backends as real jobs."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.accounts import needs_root, unix_account
from tests.support.gateway_process import GatewayProcess, free_port, new_gateway
from tests.support.jobs import ended, wait_for_job
from tests.support.services import (
    BACKEND,
    SERVICES,
    SYSTEM_PYTHON,
    admin_token,
    backend_script,
    in_state,
    replicas,
    services_gateway,
    stop_services,
    toml_string,
    wait_replicas,
)

BASE = """
service_interval = 0.2
service_wait_seconds = 3
max_script_bytes = 4096

[systems.local]
scheduler = "embedded"
status_interval = 0.2
slots = 16
"""
LIMITS = """
[service_limits]
services_per_user = 3
replicas_per_user = 4
replicas_per_service = 3
time_limit = 600
"""
#: No fallback account: a user with no Unix account of its own (carol, or the declared
#: service's run_as) cannot run jobs.
NO_FALLBACK = f"""
[services.orphan]
system = "local"
script = {toml_string(backend_script())}
min_replicas = 1
max_replicas = 1
users = ["alice"]
run_as = "no-such-account"

[users]
mode = "auto"
"""


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = BASE + LIMITS + NO_FALLBACK
    with services_gateway(tmp_path_factory.mktemp("gateway"), config) as server:
        yield server


@pytest.fixture(scope="module")
def alice(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with gateway.client(gateway.token("alice")) as client:
        yield client


@contextmanager
def _alices_gateway(tmp_path: Path, config: str) -> Iterator[tuple[GatewayProcess, str]]:
    """A started gateway and a token of alice's; whatever the test did, every replica it
    started is stopped (a replica's job outlives its gateway), then the gateway."""
    server = new_gateway(tmp_path / "home", config)
    server.start()
    token = server.token("alice")
    try:
        yield server, token
    finally:
        with contextlib.suppress(Exception):  # the test's own failure is the one to see
            stop_services(server.url, admin_token(server.home), [token])
        server.stop()


def _create(client: httpx.Client, **fields: Any) -> httpx.Response:
    body = {"system": "local", "script": backend_script(), **fields}
    body.setdefault("name", f"s{uuid.uuid4().hex[:8]}")
    return client.post(SERVICES, json=body)


def _refused(answer: httpx.Response, limit: int, requested: int) -> str:
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"] == "application/problem+json"
    problem = answer.json()
    assert problem["type"] == "https://hpcgate.dev/problems/limit-exceeded"
    assert (problem["limit"], problem["requested"]) == (limit, requested)
    detail: str = problem["detail"]
    return detail


def _names(client: httpx.Client) -> set[str]:
    return {s["name"] for s in client.get(SERVICES).json() if s["owner"] is not None}


def _remove(client: httpx.Client, *names: str) -> None:
    for name in names:
        assert client.delete(f"{SERVICES}/{name}").status_code == 202
    deadline = time.monotonic() + 30
    while _names(client) & set(names):
        assert time.monotonic() < deadline, "services never went away"
        time.sleep(0.2)


def test_a_service_past_a_users_limits_is_a_403_that_changes_nothing(
    alice: httpx.Client,
) -> None:
    assert _create(alice, name="big", max_replicas=3).status_code == 201
    detail = _refused(_create(alice, max_replicas=4), 3, 4)
    assert detail == "max_replicas 4 is over the limit of 3 per service"
    detail = _refused(_create(alice, max_replicas=2), 4, 5)
    assert detail == "your services' max_replicas would add up to 5: the limit is 4 per user"
    _refused(_create(alice, time_limit="0:10:01"), 600, 601)
    assert _create(alice, name="small", max_replicas=1).status_code == 201
    assert _names(alice) == {"big", "small"}
    # raising past the sum is refused and changes nothing; lowering is always let through
    _refused(alice.patch(f"{SERVICES}/small", json={"max_replicas": 2}), 4, 5)
    assert alice.get(f"{SERVICES}/small").json()["spec"]["max_replicas"] == 1
    assert alice.patch(f"{SERVICES}/big", json={"max_replicas": 2}).status_code == 200
    assert alice.patch(f"{SERVICES}/small", json={"max_replicas": 2}).status_code == 200
    assert _create(alice, name="none", max_replicas=0).status_code == 201
    detail = _refused(_create(alice, max_replicas=0), 3, 4)
    assert detail == "you have 3 services: the limit is 3 per user"
    assert _names(alice) == {"big", "small", "none"}
    _remove(alice, "big", "small", "none")
    assert _create(alice, name="again", max_replicas=3).status_code == 201  # room again
    _remove(alice, "again")


def test_a_replicas_job_gets_the_time_limit_when_its_service_names_none(
    alice: httpx.Client,
) -> None:
    name = _create(alice, min_replicas=1, max_replicas=1).json()["name"]
    [replica] = wait_replicas(alice, name, in_state("ready"))
    job = alice.get(f"/api/v1/systems/local/jobs/{replica['job_id']}").json()
    assert job["time_limit"] == 600
    _remove(alice, name)


@needs_root
def test_a_users_service_with_no_account_says_why_it_has_no_replica(
    gateway: GatewayProcess,
) -> None:
    with gateway.client(gateway.token("carol")) as carol:
        name = _create(carol, min_replicas=1, max_replicas=1).json()["name"]
        why = "its account cannot be resolved: user 'carol' maps to no Unix account"
        deadline = time.monotonic() + 30
        while not (carol.get(f"{SERVICES}/{name}").json()["problem"] or "").startswith(why):
            assert time.monotonic() < deadline, carol.get(f"{SERVICES}/{name}").text
            time.sleep(0.2)
        assert replicas(carol, name) == []
        with carol.stream("GET", f"{SERVICES}/{name}/events") as stream:
            data = next(line for line in stream.iter_lines() if line.startswith("data:"))
        event = json.loads(data.removeprefix("data:"))
        assert (event["kind"], event["replica"]) == ("problem", None)
        assert event["text"].startswith(why)
        assert carol.delete(f"{SERVICES}/{name}").status_code == 202


@needs_root
def test_a_declared_service_whose_run_as_has_no_account_says_why(alice: httpx.Client) -> None:
    why = "its account cannot be resolved: user 'no-such-account' maps to no Unix account"
    deadline = time.monotonic() + 30
    while not (alice.get(f"{SERVICES}/orphan").json()["problem"] or "").startswith(why):
        assert time.monotonic() < deadline, alice.get(f"{SERVICES}/orphan").text
        time.sleep(0.2)
    assert replicas(alice, "orphan") == []


@needs_root
def test_a_port_another_account_listens_on_fails_the_replica(alice: httpx.Client) -> None:
    script = backend_script(env="NEVER_LISTEN=1")  # alice's server never opens its port
    name = _create(alice, script=script, min_replicas=1, max_replicas=1).json()["name"]
    [replica] = wait_replicas(alice, name, lambda rs: bool(rs and rs[0]["job_id"]))
    bob = unix_account("bob")
    env = {"HPCGATE_SERVICE_PORT": str(replica["port"]), "PATH": os.environ["PATH"]}
    squatter = subprocess.Popen([SYSTEM_PYTHON, BACKEND], env=env, user=bob.uid, cwd="/")
    try:
        found = wait_replicas(alice, name, lambda rs: rs[0]["state"] != "starting")
    finally:
        squatter.kill()
        squatter.wait()
    first = found[0]
    assert first["state"] == "failed"
    assert first["reason"] == f"port {replica['port']} is taken by another account (uid {bob.uid})"
    wait_for_job(alice, replica["job_id"], ended)  # its job was cancelled
    _remove(alice, name)


def test_the_controller_starts_no_replica_past_a_limit_the_admin_lowered(
    tmp_path: Path,
) -> None:
    with _alices_gateway(tmp_path, BASE) as (server, token), server.client(token) as alice:
        assert _create(alice, name="a", min_replicas=2, max_replicas=2).status_code == 201
        assert _create(alice, name="b", max_replicas=2).status_code == 201
        wait_replicas(alice, "a", in_state("ready", 2))
        server.stop()
        server.config.write_text(
            server.config.read_text() + "\n[service_limits]\nreplicas_per_user = 2\n"
        )
        server.start()
        answer = alice.patch(f"{SERVICES}/b", json={"min_replicas": 1})
        assert answer.status_code == 200, answer.text  # max unchanged: not a raise
        why = "alice's services have 2 live replicas: the limit is 2 per user"
        deadline = time.monotonic() + 30
        while alice.get(f"{SERVICES}/b").json()["problem"] != why:
            assert time.monotonic() < deadline, alice.get(f"{SERVICES}/b").text
            time.sleep(0.2)
        waited = alice.get(f"{SERVICES}/b/proxy/pid")  # rounds go by: still none starts
        assert waited.status_code == 503
        assert waited.json()["detail"] == f"service 'b' has no ready replica: {why}"
        assert replicas(alice, "b") == []
        assert len(wait_replicas(alice, "a", in_state("ready", 2))) == 2
        scale = {"min_replicas": 1, "max_replicas": 1}
        assert alice.patch(f"{SERVICES}/a", json=scale).status_code == 200
        wait_replicas(alice, "b", in_state("ready"))  # a drained one: room for b
        assert alice.get(f"{SERVICES}/b").json()["problem"] is None


def test_a_port_range_too_small_says_so_and_starts_nothing_more(tmp_path: Path) -> None:
    port = free_port()
    config = f"service_ports = [{port}, {port}]\n" + BASE
    with _alices_gateway(tmp_path, config) as (server, token), server.client(token) as alice:
        assert _create(alice, name="two", min_replicas=2, max_replicas=2).status_code == 201
        [one] = wait_replicas(alice, "two", in_state("ready"))
        assert one["port"] == port
        why = f"every service port from {port} to {port} is taken"
        assert alice.get(f"{SERVICES}/two").json()["problem"] == why
        time.sleep(1)
        assert [r["id"] for r in replicas(alice, "two")] == [one["id"]]
        assert alice.get(f"{SERVICES}/two/proxy/pid").status_code == 200
