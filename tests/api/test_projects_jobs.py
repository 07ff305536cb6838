"""Jobs in a project through the real gateway (as root: each user's jobs run as their own
Unix account): members see them with their role's scopes, everyone else gets 404, and a
member removed loses access with the very next request of the same token."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess
from tests.support.jobs import hidden_from, submit, wait_for_job

JOBS = "/api/v1/systems/local/jobs"
PROJECTS = "/api/v1/projects"
LONG = "#!/bin/bash\necho project-output\nsleep 120"


@pytest.fixture(scope="module")
def admin(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with gateway.client((gateway.home / "admin-token").read_text().strip()) as client:
        yield client


@pytest.fixture
def project(admin: httpx.Client, alice: httpx.Client) -> str:
    """A project alice owns and bob views."""
    name = f"p{uuid.uuid4().hex[:10]}"
    assert admin.post(PROJECTS, json={"name": name, "owner": "alice"}).status_code == 201
    assert alice.put(f"{PROJECTS}/{name}/members/bob", json={"role": "viewer"}).is_success
    return name


def output_of(client: httpx.Client, job_id: str, text: str) -> str:
    """The job's output once it holds ``text`` (polled: the job writes it when it starts)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        answer = client.get(f"{JOBS}/{job_id}/output")
        assert answer.status_code == 200, answer.text
        if text in answer.text:
            return answer.text
        time.sleep(0.1)
    raise AssertionError(f"job {job_id}: no {text!r} in its output")


def test_a_viewer_reads_a_member_cancels_an_outsider_sees_nothing(
    project: str,
    alice: httpx.Client,
    bob: httpx.Client,
    gateway_user: httpx.Client,
    workdir: Path,
) -> None:
    job = submit(alice, script=LONG, project=project, working_directory=str(workdir))
    assert job["project"] == project and job["owner"] == "alice"
    listed = bob.get(JOBS, params={"project": project})
    assert [j["id"] for j in listed.json()["items"]] == [job["id"]]
    assert job["id"] not in {j["id"] for j in bob.get(JOBS).json()["items"]}  # not bob's own
    assert "project-output" in output_of(bob, job["id"], "project-output")  # as alice's account
    refused = bob.delete(f"{JOBS}/{job['id']}")
    assert refused.status_code == 403 and refused.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert bob.get(f"{JOBS}/{job['id']}").json()["state"] in ("PENDING", "RUNNING")
    hidden_from(gateway_user, JOBS, job["id"])
    assert gateway_user.get(JOBS, params={"project": project}).status_code == 404
    assert alice.put(f"{PROJECTS}/{project}/members/bob", json={"role": "member"}).is_success
    assert bob.delete(f"{JOBS}/{job['id']}").status_code == 202
    assert wait_for_job(alice, job["id"], lambda j: j["state"] == "CANCELLED")


def test_a_member_removed_loses_access_at_once(
    project: str, alice: httpx.Client, bob: httpx.Client, workdir: Path
) -> None:
    job = submit(alice, script=LONG, project=project, working_directory=str(workdir))
    assert bob.get(f"{JOBS}/{job['id']}").status_code == 200
    assert alice.delete(f"{PROJECTS}/{project}/members/bob").status_code == 204
    hidden_from(bob, JOBS, job["id"])
    assert bob.get(JOBS, params={"project": project}).status_code == 404
    assert alice.delete(f"{JOBS}/{job['id']}").status_code == 202


def test_only_members_who_may_write_submit_in_a_project(
    project: str, bob: httpx.Client, gateway_user: httpx.Client
) -> None:
    spec = {"script": LONG, "project": project}
    assert bob.post(JOBS, json=spec).status_code == 403  # a viewer
    assert gateway_user.post(JOBS, json=spec).status_code == 404  # no role: no such project
    assert bob.get(JOBS, params={"project": project}).json()["items"] == []
    assert gateway_user.get(JOBS).json()["items"] == []
