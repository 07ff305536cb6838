"""Accounts over SSH come from the login node, not from the gateway's machine.

The multi-user gateway here runs in a mount namespace of its own (``unshare --mount``) in
which /etc/passwd and /etc/group are copies without alice and bob: to it they do not
exist. The test sshd's host (this machine, outside the namespace) knows them, and the
gateway must serve them from there: their accounts, uids and homes from ``getent passwd``
over SSH, with root and system accounts refused as locally.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ssh.test_ssh_files import config
from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.jobs import ended, submit, wait_for_job
from tests.support.slurm import ensure_cluster
from tests.support.sshd import Sshd

HIDDEN = ("alice", "bob")
BLIND = 'mount --bind "$1" /etc/passwd && mount --bind "$2" /etc/group && shift 2 && exec "$@"'


def without(source: str, names: tuple[str, ...]) -> str:
    lines = Path(source).read_text().splitlines(keepends=True)
    return "".join(line for line in lines if line.split(":", 1)[0] not in names)


@pytest.fixture(scope="module")
def blind(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, ...]:
    """An argv prefix that runs a program where alice and bob are unknown."""
    if os.geteuid() != 0:
        pytest.skip("a mount namespace needs root")
    base = tmp_path_factory.mktemp("blind")
    (base / "passwd").write_text(without("/etc/passwd", HIDDEN))
    (base / "group").write_text(without("/etc/group", HIDDEN))
    return ("unshare", "--mount", "--", "sh", "-c", BLIND, "sh", str(base / "passwd"),
            str(base / "group"))  # fmt: skip


@pytest.fixture(scope="module")
def gateway(
    sshd: Sshd, blind: tuple[str, ...], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[GatewayProcess]:
    ensure_cluster()
    server = new_gateway(tmp_path_factory.mktemp("ssh-accounts"), config(sshd))
    server.wrapper = blind
    server.start()
    yield server
    server.stop()


def test_the_gateway_s_machine_does_not_know_alice(blind: tuple[str, ...]) -> None:
    inside = subprocess.run([*blind, "getent", "passwd", "alice"], capture_output=True)
    assert inside.returncode == 2 and inside.stdout == b""
    assert subprocess.run(["getent", "passwd", "alice"], capture_output=True).returncode == 0


def test_alice_is_served_from_the_login_node(gateway: GatewayProcess) -> None:
    with gateway.client(gateway.token("alice")) as alice:
        system = alice.get("/api/v1/systems/cluster").json()
        assert (system["roots"], system["home"]) == (["/home/alice"], "/home/alice")
        listing = alice.get("/api/v1/systems/cluster/files/ls", params={"path": "."})
        assert listing.status_code == 200, listing.text
        job = submit(alice, "cluster", script="#!/bin/bash\nid -un\n")
        done = wait_for_job(alice, job["id"], ended, system="cluster", timeout=60)
        assert (done["state"], done["working_directory"]) == ("COMPLETED", "/home/alice")
        output = alice.get(f"/api/v1/systems/cluster/jobs/{job['id']}/output")
        assert output.text == "alice\n"


@pytest.mark.parametrize("user", ["root", "daemon", "nobody", "no-such-user"])
def test_root_system_and_unknown_accounts_are_refused(
    gateway: GatewayProcess, sshd: Sshd, user: str
) -> None:
    with gateway.client(gateway.token(user)) as client:
        response = client.get("/api/v1/systems/cluster/files/ls", params={"path": "/tmp"})
        assert response.status_code == 403, response.text
        assert response.headers["content-type"] == "application/problem+json"
        refused = client.post("/api/v1/systems/cluster/jobs", json={"script": "#!/bin/sh\nid\n"})
        assert refused.status_code == 403, refused.text
    assert f"ID hpcgate:cluster:{user}" not in sshd.log.read_text(errors="replace")
