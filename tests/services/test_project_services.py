"""Services in a project, through a real gateway on the embedded scheduler with a real
backend: its members reach it as PROJECT~NAME (proxy and /v1), a viewer only sees it,
anyone else gets 404, a member removed loses it with the next request, a user's own
service of the same name is another service, and limited tokens see what they are
limited to."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hpcgate.client import Client
from tests.services.conftest import CONFIG as DECLARING
from tests.support.gateway_process import GatewayProcess, cli, user_client
from tests.support.services import (
    SERVICES,
    admin_token,
    backend_script,
    bearer,
    create_service,
    ready,
    services_gateway,
    wait_replicas,
)

PROJECTS = "/api/v1/projects"
#: The services tier's gateway, without its declared service (none is needed here).
CONFIG = DECLARING.split("[services.echo]")[0]
#: A new service's body (min 0: it would start no replica).
NEW = {"name": "other", "system": "local", "script": backend_script()}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    with services_gateway(tmp_path_factory.mktemp("gateway"), CONFIG) as server:
        yield server
        _stop_project_services(server)


alice = user_client("alice")
bob = user_client("bob")
carol = user_client("carol")  # no member of any project
dave = user_client("dave")  # the member whose role the tests change


@pytest.fixture(scope="module")
def admin(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with gateway.client(admin_token(gateway.home)) as client:
        yield client


@pytest.fixture(scope="module")
def project(admin: httpx.Client, alice: httpx.Client) -> str:
    """A project alice owns, bob and dave are members of, with alice's service ``web``
    (one ready replica, model ``tiny``)."""
    name = f"p{uuid.uuid4().hex[:8]}"
    assert admin.post(PROJECTS, json={"name": name, "owner": "alice"}).status_code == 201
    for user in ("bob", "dave"):
        added = alice.put(f"{PROJECTS}/{name}/members/{user}", json={"role": "member"})
        assert added.is_success, added.text
    create_service(alice, name="web", project=name, min_replicas=1, models=["tiny"])
    wait_replicas(alice, f"{name}~web", lambda found: bool(ready(found)))
    return name


def _stop_project_services(server: GatewayProcess) -> None:
    """Delete every project's service (as the admin) and wait for their replicas to end:
    the tier's own clean-up knows only the users' own services."""
    with server.client(admin_token(server.home)) as admin:
        listed = [s for s in admin.get(SERVICES, params={"all": "true"}).json() if s["project"]]
        for service in listed:
            admin.delete(f"{SERVICES}/{service['project']}~{service['name']}")
        deadline = time.monotonic() + 60
        while any(_live(admin, f"{s['project']}~{s['name']}") for s in listed):
            assert time.monotonic() < deadline, "project replicas still live"
            time.sleep(0.3)


def _live(client: httpx.Client, name: str) -> bool:
    answer = client.get(f"{SERVICES}/{name}")
    if answer.status_code == 404:
        return False
    states = {r["state"] for r in answer.json()["replicas"]}
    return bool(states & {"starting", "ready", "draining"})


def models(client: httpx.Client) -> set[str]:
    answer = client.get("/v1/models")
    assert answer.status_code == 200, answer.text
    return {model["id"] for model in answer.json()["data"]}


def complete(client: httpx.Client, model: str) -> httpx.Response:
    body = {"model": model, "prompt": "hi", "stream": True}
    return client.post("/v1/completions", json=body)


def problem(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


def limited(owner: httpx.Client, gateway: GatewayProcess, **limits: Any) -> httpx.Client:
    made = owner.post("/api/v1/tokens", json=limits)
    assert made.status_code == 201, made.text
    return gateway.client(made.json()["token"])


def test_members_use_it_and_everyone_else_is_told_it_does_not_exist(
    project: str, alice: httpx.Client, bob: httpx.Client, carol: httpx.Client
) -> None:
    name = f"{project}~web"
    seen = bob.get(f"{SERVICES}/{name}").json()
    assert (seen["name"], seen["project"], seen["owner"]) == ("web", project, "alice")
    assert bob.get(f"{SERVICES}/{name}/proxy/pid").json()["port"] == seen["replicas"][0]["port"]
    assert f"{project}~tiny" in models(bob) and "tiny" not in models(bob)
    streamed = complete(bob, f"{project}~tiny")
    assert streamed.status_code == 200 and "[DONE]" in streamed.text
    scaled = bob.patch(f"{SERVICES}/{name}", json={"max_replicas": 2})  # a member scales it
    assert scaled.status_code == 200 and scaled.json()["spec"]["max_replicas"] == 2
    assert bob.patch(f"{SERVICES}/{name}", json={"max_replicas": 1}).status_code == 200
    for answer in (
        carol.get(f"{SERVICES}/{name}"),
        carol.get(f"{SERVICES}/{name}/proxy/pid"),
        carol.patch(f"{SERVICES}/{name}", json={"max_replicas": 2}),
        carol.delete(f"{SERVICES}/{name}"),
        carol.get(f"{SERVICES}", params={"project": project}),
        carol.post(SERVICES, json={**NEW, "project": project}),
    ):
        problem(answer, 404)
    assert f"{project}~tiny" not in models(carol)
    assert complete(carol, f"{project}~tiny").status_code == 404
    assert all(s["project"] is None for s in alice.get(SERVICES).json())  # not in the default
    listed = bob.get(SERVICES, params={"project": project}).json()
    assert [(s["name"], s["project"]) for s in listed] == [("web", project)]
    assert alice.get(f"{SERVICES}/web").status_code == 404  # a plain name is never a project's


def test_a_viewer_sees_and_a_member_removed_loses_it_at_once(
    project: str, alice: httpx.Client, dave: httpx.Client
) -> None:
    name, model, member = f"{project}~web", f"{project}~tiny", f"{PROJECTS}/{project}/members/dave"
    assert dave.get(f"{SERVICES}/{name}/proxy/pid").status_code == 200
    assert model in models(dave)  # the /v1 table is now worked out for dave, and kept
    try:
        assert alice.put(member, json={"role": "viewer"}).is_success
        assert dave.get(f"{SERVICES}/{name}").status_code == 200
        assert len(dave.get(SERVICES, params={"project": project}).json()) == 1
        problem(dave.get(f"{SERVICES}/{name}/proxy/pid"), 403)
        problem(dave.patch(f"{SERVICES}/{name}", json={"max_replicas": 2}), 403)
        problem(dave.post(SERVICES, json={**NEW, "project": project}), 403)
        assert model not in models(dave)  # the next request: no stale table
        assert alice.delete(member).status_code == 204
        for answer in (dave.get(f"{SERVICES}/{name}"), dave.get(f"{SERVICES}/{name}/proxy/pid")):
            problem(answer, 404)
        assert complete(dave, model).status_code == 404
    finally:
        assert alice.put(member, json={"role": "member"}).is_success
    assert dave.get(f"{SERVICES}/{name}/proxy/pid").status_code == 200
    assert model in models(dave)


def test_a_member_removed_on_the_servers_command_line_loses_the_models_at_once(
    project: str, gateway: GatewayProcess, alice: httpx.Client, dave: httpx.Client
) -> None:
    """The command line writes the store beside the gateway (as another gateway on a shared
    database would): the gateway's /v1 table is not told, but the role is read again."""
    model = f"{project}~tiny"
    assert model in models(dave)  # dave's /v1 table, kept
    try:
        cli(gateway.home, "project", "remove", project, "dave", wrapper=gateway.wrapper)
        assert complete(dave, model).status_code == 404
        problem(dave.get(f"{SERVICES}/{project}~web/proxy/pid"), 404)
    finally:
        assert alice.put(f"{PROJECTS}/{project}/members/dave", json={"role": "member"}).is_success


def test_a_users_own_service_and_the_projects_of_one_name_are_two(
    project: str, bob: httpx.Client
) -> None:
    own = create_service(bob, name="web", models=["tiny"])  # min 0: no replica started
    try:
        mine, theirs = bob.get(f"{SERVICES}/web").json(), bob.get(f"{SERVICES}/{project}~web")
        assert (mine["owner"], mine["project"]) == ("bob", None)
        assert theirs.json()["owner"] == "alice"
        assert {"tiny", f"{project}~tiny"} <= models(bob)
        problem(bob.post(SERVICES, json={**NEW, "name": "web", "project": project}), 409)
        problem(bob.delete(f"{SERVICES}/{project}~web"), 403)  # alice's, and bob no owner
        assert [s["name"] for s in bob.get(SERVICES).json()] == ["web"]
    finally:
        assert bob.delete(f"{SERVICES}/{own}").status_code == 202
    assert bob.get(f"{SERVICES}/{project}~web").status_code == 200


def test_tokens_limited_to_the_project_or_the_service_see_it_alone(
    project: str, gateway: GatewayProcess, bob: httpx.Client
) -> None:
    name = f"{project}~web"
    with limited(bob, gateway, project=project) as token:
        assert token.get(SERVICES).json() == []  # none of bob's own
        assert len(token.get(SERVICES, params={"project": project}).json()) == 1
        assert token.get(f"{SERVICES}/{name}/proxy/pid").status_code == 200
        assert models(token) == {f"{project}~tiny"}
        problem(token.post(SERVICES, json=NEW), 403)
    with limited(bob, gateway, service=name) as token:
        assert token.get(f"{SERVICES}/{name}/proxy/pid").status_code == 200
        assert [s["name"] for s in token.get(SERVICES).json()] == ["web"]  # it alone
        assert models(token) == {f"{project}~tiny"}
        problem(token.get(f"{SERVICES}/web"), 403)
    with limited(bob, gateway, read_only=True) as token:
        assert token.get(f"{SERVICES}/{name}/proxy/pid").status_code == 200
        problem(token.post(f"{SERVICES}/{name}/proxy/echo", content=b"x"), 403)
        problem(token.delete(f"{SERVICES}/{name}"), 403)
    with limited(bob, gateway, project="elsewhere") as token:
        problem(token.get(f"{SERVICES}/{name}"), 404)
        assert models(token) == set()


def test_an_admin_token_limited_to_a_project_lists_no_other_services(
    project: str, gateway: GatewayProcess, admin: httpx.Client
) -> None:
    scopes = ["admin", "jobs:read"]
    for limits in ({"project": project}, {"service": f"{project}~web"}):
        with limited(admin, gateway, scopes=scopes, **limits) as token:
            problem(token.get(SERVICES, params={"all": "true"}), 403)
    assert len(admin.get(SERVICES, params={"all": "true"}).json()) >= 1


def test_names_that_are_no_service_address_are_refused(bob: httpx.Client) -> None:
    for name in ("p~", "~web", "p~q~web", "P~web", "p~web-" + "x" * 40):
        assert bob.get(f"{SERVICES}/{name}").status_code in (404, 422), name
    problem(bob.post(SERVICES, json={**NEW, "name": "p~web"}), 422)


def test_the_sdk_lists_and_reads_a_projects_service(
    project: str, gateway: GatewayProcess, bob: httpx.Client
) -> None:
    with Client(gateway.url, bearer(bob)) as hpc:
        assert [s.name for s in hpc.services.list(project)] == ["web"]
        assert hpc.services.get(f"{project}~web").project == project
        assert hpc.services.request(f"{project}~web", "GET", "/pid").status_code == 200
