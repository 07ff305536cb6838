"""Multi-user mode: each user's commands run as its own Unix account; never as root."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import httpx
import pytest

from tests.support.gateway_process import GatewayProcess
from tests.support.jobs import ended, hidden_from, submit, wait_for_job
from tests.support.slurm import SYSTEM

JOBS = f"/api/v1/systems/{SYSTEM}/jobs"
SCRIPT = "#!/bin/bash\nsleep 30\n"


def test_bob_cannot_see_read_or_cancel_alices_job(alice: httpx.Client, bob: httpx.Client) -> None:
    job = submit(alice, SYSTEM, script=SCRIPT)
    hidden_from(bob, JOBS, job["id"])
    alice.delete(f"{JOBS}/{job['id']}")
    assert wait_for_job(alice, job["id"], ended, system=SYSTEM)["state"] == "CANCELLED"


def test_commands_run_with_the_accounts_permissions(bob: httpx.Client) -> None:
    """bob's sbatch runs as bob: alice's private script is unreadable to it."""
    private = Path("/home/alice/hpcgate-private.sh")
    private.write_text("#!/bin/bash\necho secret\n")
    os.chown(private, pwd.getpwnam("alice").pw_uid, pwd.getpwnam("alice").pw_gid)
    private.chmod(0o600)
    response = bob.post(JOBS, json={"script_path": str(private)})
    assert response.status_code == 422, response.text
    assert response.json()["type"].endswith("/scheduler-rejected")
    assert str(private) in response.json()["detail"]


def test_jobs_run_as_the_account_not_root(bob: httpx.Client) -> None:
    target = Path("/home/alice/bob-was-here")
    target.unlink(missing_ok=True)
    Path("/home/alice").chmod(0o755)  # readable, not writable, for others
    job = submit(bob, SYSTEM, script=f"#!/bin/bash\nid -un\ntouch {target}\n")
    job = wait_for_job(bob, job["id"], ended, system=SYSTEM)
    assert (job["state"], job["exit_code"]) == ("FAILED", 1)
    assert not target.exists()
    output = bob.get(f"{JOBS}/{job['id']}/output").text  # stderr goes to stdout by default
    assert output.startswith("bob\n") and "Permission denied" in output


@pytest.mark.parametrize("user", ["root", "rooty", "daemon", "nosuchuser"])
def test_root_system_and_unknown_accounts_are_never_used(
    slurm_gateway: GatewayProcess, user: str
) -> None:
    with slurm_gateway.client(slurm_gateway.token(user)) as client:
        response = client.post(JOBS, json={"script": SCRIPT})
        assert response.status_code == 403, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert client.get(f"/api/v1/systems/{SYSTEM}/accounts").status_code == 403


@pytest.mark.parametrize("user", ["root", "nosuchuser"])
def test_an_account_never_used_cannot_reach_files_through_any_route(
    slurm_gateway: GatewayProcess, user: str
) -> None:
    """Each route resolves the caller's account before acting (the account is looked up on
    first use): none falls back to the gateway's own account, whose home (root's) would
    then be the caller's root."""
    gateways_home = Path(pwd.getpwuid(os.geteuid()).pw_dir)
    made = gateways_home / f"hpcgate-test-made-by-{user}-{os.getpid()}"
    files = f"/api/v1/systems/{SYSTEM}/files"
    with slurm_gateway.client(slurm_gateway.token(user)) as client:
        answers = [
            client.get(f"{files}/ls", params={"path": str(gateways_home)}),
            client.post(f"{files}/mkdir", json={"path": str(made)}),
            client.put(f"{files}/upload", params={"path": str(made)}, content=b"x"),
            client.post(f"{files}/uploads", json={"path": str(made), "size": 1}),
            client.post(f"{files}/cp", json={"source": "/etc/hostname", "target": str(made)}),
            client.get(f"/api/v1/systems/{SYSTEM}"),
        ]
    existed = made.exists()
    if made.is_dir():
        made.rmdir()
    elif existed:
        made.unlink()
    assert [answer.status_code for answer in answers] == [403] * len(answers)
    assert not existed


def test_mapped_principal_runs_as_its_account(slurm_gateway: GatewayProcess) -> None:
    with slurm_gateway.client(slurm_gateway.token("alice@example.org")) as client:
        job = submit(client, SYSTEM, script="#!/bin/bash\nid -un\n")
        job = wait_for_job(client, job["id"], ended, system=SYSTEM)
        assert job["working_directory"] == "/home/alice"
        assert client.get(f"{JOBS}/{job['id']}/output").text == "alice\n"
