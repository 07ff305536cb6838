"""Tokens limited to one system, one project or to reading, through a real gateway with
two systems: every route honours the limits, and a limited token mints nothing. The same
gateway gives each project a files root (``project_root``), open to its members by role."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.accounts import passable
from tests.support.gateway_process import TEST_CONFIG, GatewayProcess, running_gateway
from tests.support.jobs import submit

TWO_SYSTEMS = TEST_CONFIG + '\n[systems.other]\nscheduler = "embedded"\nstatus_interval = 0.2\n'
LOCAL, OTHER = "/api/v1/systems/local", "/api/v1/systems/other"
LONG = "#!/bin/bash\nsleep 120"


@pytest.fixture(scope="module")
def project_dirs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the projects' roots are: every account may pass (the roots' own modes say
    who may enter them)."""
    path = tmp_path_factory.mktemp("projects")
    passable(path / "x")
    return path


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory, project_dirs: Path) -> Iterator[GatewayProcess]:
    root = f'project_root = "{project_dirs}/{{project}}"\n'
    config = TWO_SYSTEMS.replace("slots = 4\n", f"slots = 4\n{root}", 1)
    yield from running_gateway(tmp_path_factory.mktemp("limits"), config)


@pytest.fixture(scope="module")
def alice(two: GatewayProcess) -> Iterator[httpx.Client]:
    with two.client(two.token("alice")) as client:
        yield client


@pytest.fixture(scope="module")
def admin(two: GatewayProcess) -> Iterator[httpx.Client]:
    with two.client((two.home / "admin-token").read_text().strip()) as client:
        yield client


def limited(two: GatewayProcess, alice: httpx.Client, **limits: Any) -> httpx.Client:
    made = alice.post("/api/v1/tokens", json=limits)
    assert made.status_code == 201, made.text
    for name, value in limits.items():
        assert made.json()[name] == value
    return two.client(made.json()["token"])


def refused(answer: httpx.Response, status: int = 403) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == "application/problem+json"


def test_a_token_for_one_system_knows_no_other(
    two: GatewayProcess, alice: httpx.Client, workdir: Path
) -> None:
    with limited(two, alice, system="local") as token:
        assert [s["name"] for s in token.get("/api/v1/systems").json()] == ["local"]
        assert token.get(f"{LOCAL}/jobs").status_code == 200
        for answer in (token.get(f"{OTHER}/jobs"), token.get(OTHER), token.get(f"{OTHER}/nodes")):
            refused(answer, 404)
        refused(token.post(f"{OTHER}/jobs", json={"script": LONG}), 404)
        for path in ("/api/v1/services", "/api/v1/functions", "/api/v1/usage", "/v1/models"):
            assert token.get(path).status_code == 403, path
        refused(token.post("/api/v1/tokens", json={}))  # mints nothing, not even narrower
        (me,) = token.get("/api/v1/tokens").json()  # it sees itself alone
        others = [t["id"] for t in alice.get("/api/v1/tokens").json() if t["id"] != me["id"]]
        refused(token.delete(f"/api/v1/tokens/{others[0]}"), 404)  # nor revokes the others
        job = submit(token, script=LONG, working_directory=str(workdir))
        assert token.delete(f"{LOCAL}/jobs/{job['id']}").status_code == 202
    assert alice.get(f"{OTHER}/jobs").json()["items"] == []


def test_a_read_only_token_reads_and_writes_nothing(
    two: GatewayProcess, alice: httpx.Client, workdir: Path
) -> None:
    job = submit(alice, script=LONG, working_directory=str(workdir))
    home = alice.get(LOCAL).json()["home"]
    made = f"{home}/made-{uuid.uuid4().hex[:8]}"
    with limited(two, alice, read_only=True) as token:
        assert token.get(f"{LOCAL}/jobs/{job['id']}").status_code == 200
        assert token.get(f"{LOCAL}/files/ls", params={"path": home}).status_code == 200
        refused(token.delete(f"{LOCAL}/jobs/{job['id']}"))
        refused(token.post(f"{LOCAL}/jobs", json={"script": LONG}))
        refused(token.post(f"{LOCAL}/files/mkdir", json={"path": made}))
        refused(token.post("/api/v1/tokens", json={"scopes": ["jobs:read"]}))
        chat = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        assert token.post("/v1/chat/completions", json=chat).status_code == 403
        me = token.get("/api/v1/tokens").json()[-1]["id"]
        refused(token.delete(f"/api/v1/tokens/{me}"))
    assert alice.get(f"{LOCAL}/files/stat", params={"path": made}).status_code == 404
    assert alice.get(f"{LOCAL}/jobs/{job['id']}").json()["state"] in ("PENDING", "RUNNING")
    assert alice.delete(f"{LOCAL}/jobs/{job['id']}").status_code == 202


def test_a_token_for_one_project_sees_only_its_jobs(
    two: GatewayProcess, admin: httpx.Client, alice: httpx.Client, workdir: Path
) -> None:
    project = f"p{uuid.uuid4().hex[:10]}"
    assert admin.post("/api/v1/projects", json={"name": project, "owner": "alice"}).is_success
    mine = submit(alice, script=LONG, working_directory=str(workdir))
    with limited(two, alice, project=project) as token:
        inside = submit(token, script=LONG, working_directory=str(workdir))  # lands in it
        assert inside["project"] == project
        assert [j["id"] for j in token.get(f"{LOCAL}/jobs").json()["items"]] == [inside["id"]]
        refused(token.get(f"{LOCAL}/jobs/{mine['id']}"), 404)
        refused(token.delete(f"{LOCAL}/jobs/{mine['id']}"), 404)
        refused(token.get(f"{LOCAL}/files/ls", params={"path": str(workdir)}))
        assert [p["name"] for p in token.get("/api/v1/projects").json()] == [project]
        # alice hands the project to bob and leaves: her project token loses it at once
        assert admin.put(f"/api/v1/projects/{project}/members/bob", json={"role": "owner"})
        assert alice.delete(f"/api/v1/projects/{project}/members/alice").status_code == 204
        refused(token.get(f"{LOCAL}/jobs/{inside['id']}"), 404)
        refused(token.get(f"{LOCAL}/jobs"), 404)
    for job in (mine, inside):
        assert alice.delete(f"{LOCAL}/jobs/{job['id']}").status_code == 202  # still hers


def test_an_admin_token_limited_to_a_project_lists_no_other_user_s_jobs(
    two: GatewayProcess, admin: httpx.Client, alice: httpx.Client, workdir: Path
) -> None:
    project = f"p{uuid.uuid4().hex[:10]}"
    assert admin.post("/api/v1/projects", json={"name": project, "owner": "alice"}).is_success
    mine = submit(alice, script=LONG, working_directory=str(workdir))
    with limited(two, admin, project=project, scopes=["admin", "jobs:read"]) as token:
        refused(token.get(f"{LOCAL}/jobs", params={"all": "true"}))
        refused(token.get(f"{LOCAL}/jobs", params={"user": "alice"}))
    assert alice.delete(f"{LOCAL}/jobs/{mine['id']}").status_code == 202


def test_a_token_for_one_service_reaches_no_other_route(
    two: GatewayProcess, alice: httpx.Client
) -> None:
    with limited(two, alice, service="web") as token:
        assert token.get("/api/v1/services").status_code == 200
        assert token.get("/v1/models").json()["data"] == []  # none of its service's
        for answer in (
            token.get("/api/v1/services/other"),
            token.get("/api/v1/services/other/proxy/x"),  # the proxy's own fast path too
            token.post("/api/v1/services", json={}),
            token.get(f"{LOCAL}/jobs"),
            token.get("/api/v1/projects"),
            token.post("/api/v1/tokens", json={}),
        ):
            refused(answer)
        refused(token.get("/api/v1/services/web"), 404)  # its own routes: alice has no web


def test_a_limited_token_opens_no_web_session(two: GatewayProcess, alice: httpx.Client) -> None:
    """The web pages would reach past a token's limits: such a token cannot sign in."""
    made = alice.post("/api/v1/tokens", json={"read_only": True}).json()["token"]
    with httpx.Client(base_url=two.url) as browser:
        answer = browser.post("/ui/signin", data={"token": made})
        assert answer.status_code == 403 and "cannot sign in" in answer.text
        assert "set-cookie" not in answer.headers


def test_limits_that_cannot_hold_are_refused(alice: httpx.Client) -> None:
    for body in (
        {"system": "nosuch"},
        {"read_only": True, "scopes": ["jobs:write"]},
        {"system": "local", "functions": ["f"]},
        {"service": "web", "project": "climate"},
        {"service": "Not A Name"},
    ):
        refused(alice.post("/api/v1/tokens", json=body), 422)
    assert all(t["system"] != "nosuch" for t in alice.get("/api/v1/tokens").json())


def test_a_project_root_opens_to_its_members_by_role(
    two: GatewayProcess, admin: httpx.Client, alice: httpx.Client, project_dirs: Path
) -> None:
    project = f"p{uuid.uuid4().hex[:10]}"
    assert admin.post("/api/v1/projects", json={"name": project, "owner": "alice"}).is_success
    assert admin.put(f"/api/v1/projects/{project}/members/bob", json={"role": "viewer"})
    root = project_dirs / project
    root.mkdir(mode=0o777)
    root.chmod(0o777)  # the site's business: here every account may write
    other = project_dirs / "pother"
    other.mkdir(mode=0o777, exist_ok=True)
    other.chmod(0o777)
    with two.client(two.token("bob")) as bob, limited(two, alice, project=project) as token:
        made = alice.post(f"{LOCAL}/files/mkdir", json={"path": f"{root}/data"})
        assert made.status_code == 201, made.text
        names = [
            e["name"]
            for e in bob.get(f"{LOCAL}/files/ls", params={"path": str(root)}).json()["entries"]
        ]
        assert "data" in names
        refused(bob.post(f"{LOCAL}/files/mkdir", json={"path": f"{root}/bobs"}))  # a viewer
        refused(alice.get(f"{LOCAL}/files/ls", params={"path": str(other)}))  # no role there
        assert token.get(f"{LOCAL}/files/ls", params={"path": str(root)}).status_code == 200
        refused(token.get(f"{LOCAL}/files/ls", params={"path": "."}))  # not its project's
    assert sorted(p.name for p in root.iterdir()) == ["data"]
