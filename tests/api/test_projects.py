"""Projects through the real gateway: created by admins, members managed by owners (never
the last owner), and a project invisible (404) to whoever has no role in it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess, cli

PROJECTS = "/api/v1/projects"


@pytest.fixture(scope="module")
def admin(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with gateway.client((gateway.home / "admin-token").read_text().strip()) as client:
        yield client


def new_project(admin: httpx.Client, owner: str) -> str:
    name = f"p{uuid.uuid4().hex[:10]}"
    made = admin.post(PROJECTS, json={"name": name, "owner": owner, "description": "test"})
    assert made.status_code == 201, made.text
    return name


def members(client: httpx.Client, project: str) -> dict[str, str]:
    found = client.get(f"{PROJECTS}/{project}")
    assert found.status_code == 200, found.text
    return {m["user"]: m["role"] for m in found.json()["members"]}


def test_an_admin_creates_and_an_owner_manages_members(
    admin: httpx.Client, alice: httpx.Client, bob: httpx.Client
) -> None:
    project = new_project(admin, "alice")
    assert admin.post(PROJECTS, json={"name": project}).status_code == 409
    assert alice.get(f"{PROJECTS}/{project}").json()["my_role"] == "owner"
    assert bob.get(f"{PROJECTS}/{project}").status_code == 404  # no role: not there
    put = alice.put(f"{PROJECTS}/{project}/members/bob", json={"role": "viewer"})
    assert put.status_code == 200, put.text
    assert members(bob, project) == {"alice": "owner", "bob": "viewer"}
    assert project in {p["name"] for p in bob.get(PROJECTS).json()}
    # a viewer manages nothing, and learns it is refused, not that the project is absent
    refused = bob.put(f"{PROJECTS}/{project}/members/bob", json={"role": "owner"})
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert members(alice, project)["bob"] == "viewer"


def test_only_admins_create_projects(alice: httpx.Client) -> None:
    refused = alice.post(PROJECTS, json={"name": f"p{uuid.uuid4().hex[:10]}"})
    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"


def test_the_last_owner_stays(admin: httpx.Client, alice: httpx.Client) -> None:
    project = new_project(admin, "alice")
    assert alice.delete(f"{PROJECTS}/{project}/members/alice").status_code == 409
    demoted = alice.put(f"{PROJECTS}/{project}/members/alice", json={"role": "member"})
    assert demoted.status_code == 409
    assert alice.put(f"{PROJECTS}/{project}/members/bob", json={"role": "owner"}).is_success
    assert alice.delete(f"{PROJECTS}/{project}/members/alice").status_code == 204
    assert alice.get(f"{PROJECTS}/{project}").status_code == 404  # alice has left
    assert members(admin, project) == {"bob": "owner"}


def test_other_users_ids_and_unknown_projects_are_404(
    admin: httpx.Client, alice: httpx.Client, bob: httpx.Client
) -> None:
    project = new_project(admin, "alice")
    for call in (
        bob.put(f"{PROJECTS}/{project}/members/bob", json={"role": "owner"}),
        bob.delete(f"{PROJECTS}/{project}/members/alice"),
        alice.put(f"{PROJECTS}/nosuch/members/bob", json={"role": "member"}),
    ):
        assert call.status_code == 404, call.text
    assert members(alice, project) == {"alice": "owner"}
    assert alice.put(f"{PROJECTS}/{project}/members/x", json={"role": "boss"}).status_code == 422


def test_the_server_command_line_manages_projects(gateway: GatewayProcess) -> None:
    project = f"p{uuid.uuid4().hex[:10]}"
    cli(gateway.home, "project", "create", project, "--owner", "alice")
    added = cli(gateway.home, "project", "add", project, "bob", "--role", "viewer").stdout
    assert added.splitlines() == [f"{project}: -", "  alice owner", "  bob viewer"]
    last = cli(gateway.home, "project", "remove", project, "alice", check=False)
    assert last.returncode == 1 and "no owner left" in last.stderr
    lines = cli(gateway.home, "project", "list").stdout.splitlines()
    assert lines[lines.index(f"{project}: -") + 1 : lines.index(f"{project}: -") + 3] == [
        "  alice owner",
        "  bob viewer",
    ]
