"""An admin lists every user's jobs and services (``?all=true``, ``?user=``); anyone else
is refused (403) and sees only their own, as before."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess
from tests.support.services import admin_token, create_service

JOBS = "/api/v1/systems/local/jobs"
SERVICES = "/api/v1/services"


@pytest.fixture
def admin(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with gateway.client(admin_token(gateway.home)) as client:
        yield client


def _user(gateway: GatewayProcess, admin: httpx.Client) -> httpx.Client:
    name = f"l{uuid.uuid4().hex[:10]}"
    answer = admin.post("/api/v1/tokens", json={"user": name})
    assert answer.status_code == 201, answer.text
    return gateway.client(answer.json()["token"])


def _forbidden(answer: httpx.Response) -> None:
    assert answer.status_code == 403, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_an_admin_lists_every_users_jobs_and_one_users(
    gateway: GatewayProcess, admin: httpx.Client
) -> None:
    with _user(gateway, admin) as one, _user(gateway, admin) as two:
        spec = {"name": "listed", "script": "#!/bin/bash\ntrue\n"}
        first = one.post(JOBS, json=spec).json()
        second = two.post(JOBS, json=spec).json()
        owners = {
            job["id"]: job["owner"]
            for job in admin.get(JOBS, params={"all": "true"}).json()["items"]
        }
        assert owners[first["id"]] == first["owner"] and owners[second["id"]] == second["owner"]
        theirs = admin.get(JOBS, params={"all": "true", "user": first["owner"]}).json()["items"]
        assert [job["id"] for job in theirs] == [first["id"]]
        assert [
            j["id"] for j in admin.get(JOBS, params={"user": second["owner"]}).json()["items"]
        ] == [second["id"]]
        assert admin.get(JOBS).json()["items"] == []  # without them: the admin's own
        _forbidden(one.get(JOBS, params={"all": "true"}))
        _forbidden(one.get(JOBS, params={"user": second["owner"]}))
        mine = one.get(JOBS, params={"user": first["owner"]}).json()["items"]
        assert [job["id"] for job in mine] == [first["id"]]  # naming oneself needs no admin


def test_an_admin_lists_every_users_services(gateway: GatewayProcess, admin: httpx.Client) -> None:
    with _user(gateway, admin) as one:
        name = create_service(one, min_replicas=0)
        listed = admin.get(SERVICES, params={"all": "true"})
        assert listed.status_code == 200, listed.text
        owners = {(s["name"], s["owner"]) for s in listed.json()}
        owner = one.get(f"{SERVICES}/{name}").json()["owner"]
        assert (name, owner) in owners
        assert name not in {s["name"] for s in admin.get(SERVICES).json()}  # not the admin's
        _forbidden(one.get(SERVICES, params={"all": "true"}))
        assert one.delete(f"{SERVICES}/{name}").status_code == 202
