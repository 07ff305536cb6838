"""Functions in a project, through a real gateway whose workers are real jobs: members
invoke it as PROJECT~NAME, a viewer only sees it, anyone else gets 404, a member removed
loses it with the next request, a user's own function of the same name is another one,
and a token limited to the project sees the project's alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hpcgate.client import Client
from tests.sdk.test_cli import hpcgate, one_line_error, together
from tests.support.functions import ECHO, FUNCTIONS, register
from tests.support.gateway_process import GatewayProcess, user_client
from tests.support.services import SYSTEM_PYTHON, admin_token, bearer

PROJECTS = "/api/v1/projects"

alice = user_client("alice")
bob = user_client("bob")
carol = user_client("carol")  # no member of any project
dave = user_client("dave")  # the member whose role the tests change


@pytest.fixture(scope="module")
def project(gateway: GatewayProcess, alice: httpx.Client) -> Iterator[str]:
    """A project alice owns, bob and dave are members of, with alice's function ``echo``
    (one worker kept)."""
    name = f"p{uuid.uuid4().hex[:8]}"
    with gateway.client(admin_token(gateway.home)) as admin:
        assert admin.post(PROJECTS, json={"name": name, "owner": "alice"}).status_code == 201
    for user in ("bob", "dave"):
        assert alice.put(f"{PROJECTS}/{name}/members/{user}", json={"role": "member"}).is_success
    register(alice, ECHO, name="echo", project=name, min_workers=1)
    yield name
    for function in alice.get(FUNCTIONS, params={"project": name}).json():
        alice.delete(f"{FUNCTIONS}/{name}~{function['name']}")
    _no_workers_left(alice, name)


def _no_workers_left(alice: httpx.Client, project: str) -> None:
    """The pools' jobs ended: a job outlives its gateway (the pools are alice's services)."""
    deadline = time.monotonic() + 60
    while alice.get(FUNCTIONS, params={"project": project}).json():
        assert time.monotonic() < deadline
        time.sleep(0.2)


def invoke(client: httpx.Client, name: str, x: int) -> httpx.Response:
    return client.post(f"{FUNCTIONS}/{name}/invoke", json={"x": x})


def problem(answer: httpx.Response, status: int) -> None:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")


def test_members_invoke_it_and_everyone_else_is_told_it_does_not_exist(
    project: str, alice: httpx.Client, bob: httpx.Client, carol: httpx.Client
) -> None:
    name = f"{project}~echo"
    seen = bob.get(f"{FUNCTIONS}/{name}").json()
    assert (seen["name"], seen["project"], seen["owner"]) == ("echo", project, "alice")
    assert seen["source"] is None  # its owner's to read
    answered = invoke(bob, name, 2)
    assert answered.status_code == 200, answered.text
    assert answered.json()["result"] == {"x": 2}
    mine = bob.get(f"{FUNCTIONS}/{name}/invocations").json()
    assert [i["id"] for i in mine] == [answered.json()["id"]]
    assert answered.json()["id"] in {
        i["id"] for i in alice.get(f"{FUNCTIONS}/{name}/invocations").json()
    }
    body = {"name": "x", "system": "local", "source": ECHO, "project": project}
    for refused in (
        carol.get(f"{FUNCTIONS}/{name}"),
        invoke(carol, name, 1),
        carol.get(f"{FUNCTIONS}/{name}/invocations"),
        carol.delete(f"{FUNCTIONS}/{name}"),
        carol.get(FUNCTIONS, params={"project": project}),
        carol.post(FUNCTIONS, json=body),
    ):
        problem(refused, 404)
    assert all(f["project"] is None for f in alice.get(FUNCTIONS).json())  # not in the default
    problem(bob.delete(f"{FUNCTIONS}/{name}"), 403)  # alice's, and bob no owner of the project
    problem(bob.post("/api/v1/tokens", json={"functions": [name]}), 404)  # a member: no key


def test_an_owner_publishes_a_projects_function_with_a_key_for_it_alone(
    project: str, gateway: GatewayProcess, alice: httpx.Client, bob: httpx.Client
) -> None:
    name = f"{project}~echo"
    made = alice.post("/api/v1/tokens", json={"functions": [name], "limits": {"per_minute": 60}})
    assert made.status_code == 201, made.text
    assert made.json()["functions"] == [name]
    with gateway.client(made.json()["token"]) as key:
        answered = invoke(key, name, 5)
        assert answered.status_code == 200, answered.text
        assert answered.json()["result"] == {"x": 5}
        assert [i["id"] for i in key.get(f"{FUNCTIONS}/{name}/invocations").json()] == [
            answered.json()["id"]
        ]  # the key's own, not the members' others
        problem(key.get(FUNCTIONS, params={"project": project}), 404)  # nothing else
        problem(key.delete(f"{FUNCTIONS}/{name}"), 403)
        problem(key.post("/api/v1/tokens", json={"functions": [name]}), 403)
    with gateway.client(admin_token(gateway.home)) as admin:  # for alice, by another: no
        problem(admin.post("/api/v1/tokens", json={"functions": [name], "user": "alice"}), 404)
    problem(alice.post("/api/v1/tokens", json={"functions": [f"{project}~nothing"]}), 404)
    other = bob.post("/api/v1/tokens", json={"functions": [name]})
    problem(other, 404)  # bob is a member, not an owner


def test_a_viewer_sees_and_a_member_removed_loses_it_at_once(
    project: str, alice: httpx.Client, dave: httpx.Client
) -> None:
    name, member = f"{project}~echo", f"{PROJECTS}/{project}/members/dave"
    assert invoke(dave, name, 1).status_code == 200
    try:
        assert alice.put(member, json={"role": "viewer"}).is_success
        assert dave.get(f"{FUNCTIONS}/{name}").status_code == 200
        assert len(dave.get(FUNCTIONS, params={"project": project}).json()) == 1
        problem(invoke(dave, name, 1), 403)
        assert alice.delete(member).status_code == 204
        problem(dave.get(f"{FUNCTIONS}/{name}"), 404)
        problem(invoke(dave, name, 1), 404)
    finally:
        assert alice.put(member, json={"role": "member"}).is_success
    assert invoke(dave, name, 1).status_code == 200


def test_a_users_own_function_and_the_projects_of_one_name_are_two(
    project: str, gateway: GatewayProcess, bob: httpx.Client
) -> None:
    register(bob, ECHO, name="echo")  # no worker until invoked
    try:
        assert bob.get(f"{FUNCTIONS}/echo").json()["owner"] == "bob"
        assert bob.get(f"{FUNCTIONS}/{project}~echo").json()["owner"] == "alice"
        taken = {"name": "echo", "system": "local", "source": ECHO, "project": project}
        problem(bob.post(FUNCTIONS, json={**taken, "python": SYSTEM_PYTHON}), 409)
        made = bob.post("/api/v1/tokens", json={"project": project})
        with gateway.client(made.json()["token"]) as limited:
            assert limited.get(FUNCTIONS).json() == []  # none of bob's own
            assert [
                f["name"] for f in limited.get(FUNCTIONS, params={"project": project}).json()
            ] == ["echo"]
            problem(limited.get(f"{FUNCTIONS}/echo"), 404)
            assert invoke(limited, f"{project}~echo", 3).json()["result"] == {"x": 3}
    finally:
        assert bob.delete(f"{FUNCTIONS}/echo").status_code == 204


def test_the_sdk_lists_a_projects_functions(
    project: str, gateway: GatewayProcess, bob: httpx.Client
) -> None:
    with Client(gateway.url, bearer(bob)) as hpc:
        assert [f.name for f in hpc.functions.list(project)] == ["echo"]
        assert hpc.functions.get(f"{project}~echo").project == project


def test_the_command_line_lists_a_projects_functions_and_services(
    project: str, gateway: GatewayProcess, bob: httpx.Client, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCGATE_")}
    env |= {"HPCGATE_URL": gateway.url, "HPCGATE_TOKEN": bearer(bob)}
    env["HPCGATE_CONFIG_DIR"] = str(tmp_path / "config")
    for kind, names in (("functions", ["echo"]), ("services", [])):  # its pool is alice's own
        argv = [sys.executable, "-m", "hpcgate", kind, "ls", "--project", project, "--json"]
        ran = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, ran.stderr
        assert [found["name"] for found in json.loads(ran.stdout)] == names


def test_the_command_line_invokes_a_projects_function_with_project(
    project: str, gateway: GatewayProcess, bob: httpx.Client, tmp_path: Path
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPCGATE_")}
    env |= {"HPCGATE_URL": gateway.url, "HPCGATE_TOKEN": bearer(bob)}
    env["HPCGATE_CONFIG_DIR"] = str(tmp_path / "config")
    invoke = ("functions", "invoke", "echo", '{"x": 4}', "--project")
    ran, unknown, both = together(
        lambda: hpcgate(env, *invoke, project),
        lambda: hpcgate(env, *invoke, "nope"),
        lambda: hpcgate(env, "functions", "invoke", f"{project}~echo", "--project", project),
    )
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"x": 4}
    assert one_line_error(unknown, 3) == "error: Not found: no project 'nope'"
    assert "takes a plain name" in one_line_error(both, 2)
