"""The same gateway on a real PostgreSQL (started by scripts/postgres in the test command)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.support.gateway_process import TEST_CONFIG, GatewayProcess, new_gateway
from tests.support.jobs import ended, submit, wait_for_job
from tests.support.postgres import new_database_now
from tests.support.sse import read_events

pytestmark = pytest.mark.postgres
JOBS = "/api/v1/systems/local/jobs"


@pytest.fixture(scope="module")
def pg_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    config = f'database_url = "{new_database_now()}"\n' + TEST_CONFIG
    server = new_gateway(tmp_path_factory.mktemp("pg"), config)
    server.start()
    yield server
    server.stop()


def test_jobs_flow_on_postgres(pg_gateway: GatewayProcess) -> None:
    with (
        pg_gateway.client(pg_gateway.token("alice")) as alice,
        pg_gateway.client(pg_gateway.token("bob")) as bob,
    ):
        key = {"Idempotency-Key": "k1"}
        body = {"script": "#!/bin/bash\necho pg; exit 2"}
        first = alice.post(JOBS, json=body, headers=key)
        again = alice.post(JOBS, json=body, headers=key)
        assert (first.status_code, again.status_code) == (201, 200)
        job = first.json()
        assert again.json()["id"] == job["id"]
        done = wait_for_job(alice, job["id"], ended)
        assert (done["state"], done["exit_code"]) == ("FAILED", 2)
        assert done["end_time"].endswith(("Z", "+00:00"))
        states = [
            json.loads(e.data)["state"] for e in read_events(alice, f"{JOBS}/{job['id']}/events")
        ]
        assert states[0] == "PENDING" and states[-1] == "FAILED"
        assert bob.get(f"{JOBS}/{job['id']}").status_code == 404
        assert [j["id"] for j in alice.get(JOBS).json()["items"]] == [job["id"]]


def test_restart_on_postgres_keeps_jobs_and_tokens(pg_gateway: GatewayProcess) -> None:
    token = pg_gateway.token("carol")
    with pg_gateway.client(token) as carol:
        job = submit(carol, script="#!/bin/bash\nsleep 1\necho after")
    pg_gateway.stop()
    pg_gateway.start()
    with pg_gateway.client(token) as carol:
        done = wait_for_job(carol, job["id"], ended)
        assert done["state"] == "COMPLETED"
        assert carol.get(f"{JOBS}/{job['id']}/output").text == "after\n"


def test_the_audit_log_on_postgres(pg_gateway: GatewayProcess) -> None:
    audit = "/api/v1/audit"
    mine: dict[str, str | int] = {"user": "alice", "limit": 1}
    with (
        pg_gateway.client(pg_gateway.token("alice")) as alice,
        pg_gateway.client(pg_gateway.token("auditor", "admin")) as admin,
    ):
        jobs = [submit(alice, script="#!/bin/bash\ntrue\n")["id"] for _ in range(2)]
        first = admin.get(audit, params=mine).json()
        second = admin.get(audit, params=mine | {"cursor": first["next_cursor"]}).json()
    newest, before = first["items"][0], second["items"][0]
    assert (newest["route"], newest["resource"], newest["status"]) == (
        "/api/v1/systems/{system}/jobs",
        {"system": "local"},
        201,
    ), jobs
    assert int(before["id"]) < int(newest["id"])
