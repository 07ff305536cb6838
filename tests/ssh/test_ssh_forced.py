"""identity = 'forced': every command of every caller logs in as one functional account,
``hpcgate-svc``, whose key runs only hpcgate-forced with its default programs (the
scheduler's commands; tail/stat/mkdir for job files; SFTP and the few commands of the
files API).

First the transport alone against the test sshd, then a gateway (root, single-user as
``auto`` makes it) driving the real Slurm cluster (scripts/slurm) through it.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hpcgate.config import SshConfig
from hpcgate.model.errors import Conflict, Forbidden, NotFound
from hpcgate.transports.ssh import SshTransport
from tests.ssh.test_ssh_transport import account
from tests.support.gateway_process import GatewayProcess, new_gateway, user_client
from tests.support.jobs import ended, finished, hidden_from, submit, wait_for_job
from tests.support.slurm import ensure_cluster
from tests.support.sshd import FUNCTIONAL, FunctionalAccount, Sshd

SYSTEM = "remote"
BASE = f"/api/v1/systems/{SYSTEM}"
JOBS = f"{BASE}/jobs"
FILES = f"{BASE}/files"
HOSTILE = "; rm -rf ~ $(id) `id` 'q' \"d\" |x"


@pytest.fixture(scope="module")
def gateway_key(functional_account: FunctionalAccount) -> Path:
    """The key the gateway holds: hpcgate-forced with its default programs."""
    return functional_account.key()


def forced_config(sshd: Sshd, key: Path) -> SshConfig:
    return SshConfig(
        host=sshd.host,
        port=sshd.port,
        known_hosts=sshd.known_hosts,
        identity="forced",
        key=key,
        user=FUNCTIONAL,
    )


@pytest.fixture
async def transport(sshd: Sshd, gateway_key: Path) -> AsyncIterator[SshTransport]:
    made = SshTransport("cluster", forced_config(sshd, gateway_key))
    await made.start()
    yield made
    await made.close()


async def test_files_are_read_and_made_with_allowed_programs(
    transport: SshTransport, functional_scratch: Path
) -> None:
    """Ranged reads (tail), sizes (stat) and directories (mkdir -p), as the functional
    account, for whichever caller: one connection serves them all."""
    data = os.urandom(3 * (1 << 20) + 12345)
    (functional_scratch / "out").write_bytes(data)
    shutil.chown(functional_scratch / "out", FUNCTIONAL, FUNCTIONAL)
    alice, bob = account("alice"), account("bob")
    assert await transport.files(alice).size(str(functional_scratch / "out")) == len(data)
    chunks, offset = [], 0
    while chunk := await transport.files(bob).read(
        str(functional_scratch / "out"), offset, 1 << 20
    ):
        chunks.append(chunk)
        offset += len(chunk)
    assert [len(chunk) for chunk in chunks] == [1 << 20] * 3 + [12345]
    assert b"".join(chunks) == data
    assert await transport.files().read(str(functional_scratch / "out"), 5, 7) == data[5:12]
    nested = functional_scratch / "a; b" / "$(id)" / "c"
    await transport.files(alice).mkdir(str(nested), parents=True)
    await transport.files().mkdir(str(nested), parents=True)  # there already: fine
    assert nested.is_dir() and nested.stat().st_uid == pwd.getpwnam(FUNCTIONAL).pw_uid
    assert transport.pool.stats().opened == 1


async def test_file_errors_are_what_they_mean(
    transport: SshTransport, functional_scratch: Path
) -> None:
    missing = str(functional_scratch / "missing")
    assert await transport.files().size(missing) is None
    with pytest.raises(NotFound):
        await transport.files().read(missing, 0, 100)
    with pytest.raises(Forbidden):
        await transport.files().read("/etc/shadow", 0, 100)
    with pytest.raises(Conflict):
        await transport.files().read(str(functional_scratch), 0, 100)
    (functional_scratch / "file").write_text("x")
    with pytest.raises(Conflict):
        await transport.files().mkdir(str(functional_scratch / "file"), parents=True)
    with pytest.raises(Forbidden):
        await transport.files().mkdir("/root/hpcgate-forced-test", parents=True)


def test_the_functional_key_gets_no_shell(
    sshd: Sshd, functional_account: FunctionalAccount, gateway_key: Path
) -> None:
    """Not with its default programs either: no command (an interactive session), a shell."""
    for remote in ((), ("bash",), ("sh", "-c", "id")):
        argv = [*sshd.ssh_argv(FUNCTIONAL, gateway_key), *remote]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
        )
        assert done.returncode == 126, (remote, done.stdout, done.stderr)
        assert "hpcgate-forced: refused" in done.stderr and done.stdout == ""


# ---------------------------------------------------------------- a gateway on Slurm


def config(sshd: Sshd, key: Path, workdir: Path, **ssh: str) -> str:
    """No [users] table: a root gateway whose only system is forced is single-user
    (``ssh``: more settings of its SSH table)."""
    return f"""
max_script_bytes = 65536

[systems.{SYSTEM}]
scheduler = "slurm"
transport = "ssh"
description = "The test cluster, as one functional account"
status_interval = 0.5
info_cache = 0
workdir = "{workdir}/{{user}}"
roots = ["{workdir}/{{user}}"]

{sshd.table(SYSTEM, "forced", FUNCTIONAL, key=str(key), **ssh)}"""


def slurm_association(user: str) -> None:
    """``user`` in account testacct (the cluster enforces associations), made once."""
    shown = ["sacctmgr", "-n", "-P", "show", "assoc", "where", f"user={user}", "format=account"]
    if "testacct" in subprocess.run(shown, capture_output=True, text=True).stdout.split():
        return
    cluster = subprocess.run(
        ["sacctmgr", "-n", "-P", "show", "cluster", "format=cluster"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()[0]
    add = ["sacctmgr", "-i", "add", "user", user, "Account=testacct", "DefaultAccount=testacct"]
    subprocess.run([*add, f"Cluster={cluster}"], capture_output=True, check=True)
    for _ in range(100):  # slurmdbd pushes it to slurmctld
        manager = ["scontrol", "show", "assoc_mgr", f"users={user}", "flags=assoc"]
        if f"UserName={user}(" in subprocess.run(manager, capture_output=True, text=True).stdout:
            return
        time.sleep(0.1)
    raise AssertionError(f"slurmctld never learnt the association of {user}")


@pytest.fixture(scope="module")
def forced_gateway(
    sshd: Sshd,
    functional_account: FunctionalAccount,
    gateway_key: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[GatewayProcess]:
    if os.geteuid() != 0:
        pytest.skip("the gateway's Slurm account setup needs root")
    ensure_cluster()
    slurm_association(FUNCTIONAL)
    workdir = functional_account.home / f"hpcgate-forced-{uuid.uuid4().hex[:8]}"
    server = new_gateway(
        tmp_path_factory.mktemp("forced-gateway"), config(sshd, gateway_key, workdir)
    )
    server.start()
    yield server
    server.stop()
    shutil.rmtree(workdir, ignore_errors=True)


alice = user_client("alice", "forced_gateway")
bob = user_client("bob", "forced_gateway")


def run(client: httpx.Client, script: str, **spec: Any) -> dict[str, Any]:
    return submit(client, SYSTEM, script=f"#!/bin/bash\n{script}\n", **spec)


def finish(client: httpx.Client, job: dict[str, Any]) -> dict[str, Any]:
    return wait_for_job(client, job["id"], ended, system=SYSTEM, timeout=60)


def slurm_says(job_id: str, field: str) -> str:
    """One field of ``squeue --format`` (``%u`` user, ``%j`` name) for a live job."""
    argv = ["squeue", "--noheader", f"--format={field}", f"--jobs={job_id}"]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.rstrip("\n")


def test_the_gateway_is_single_user_and_healthy(
    forced_gateway: GatewayProcess, alice: httpx.Client
) -> None:
    system = alice.get(BASE).json()
    assert (system["scheduler"], system["healthy"]) == ("slurm", True), system
    assert "run as the one account hpcgate-svc" in forced_gateway.log()


def test_a_job_runs_as_the_functional_account(
    alice: httpx.Client, functional_account: FunctionalAccount
) -> None:
    """Its directory made and its output read with hpcgate-forced's programs (no SFTP)."""
    script = 'id -un; pwd; echo "$GREETING"'
    job = finish(alice, run(alice, script, environment={"GREETING": HOSTILE}))
    assert (job["state"], job["exit_code"]) == ("COMPLETED", 0), job
    workdir = Path(job["working_directory"])
    assert workdir.parent.parent == functional_account.home and workdir.name == "alice"
    assert workdir.stat().st_uid == pwd.getpwnam(FUNCTIONAL).pw_uid  # made by mkdir -p
    output = alice.get(f"{JOBS}/{job['id']}/output")
    assert output.status_code == 200, output.text
    assert output.text == f"{FUNCTIONAL}\n{workdir}\n{HOSTILE}\n"


def test_a_hostile_job_name_reaches_slurm_verbatim(alice: httpx.Client) -> None:
    job = run(alice, "sleep 300", name=HOSTILE)
    try:
        wait_for_job(alice, job["id"], lambda j: j["state"] == "RUNNING", system=SYSTEM)
        assert slurm_says(job["id"], "%j") == HOSTILE
        assert slurm_says(job["id"], "%u") == FUNCTIONAL
    finally:
        alice.delete(f"{JOBS}/{job['id']}")
    assert finish(alice, job)["state"] == "CANCELLED"


def test_users_stay_apart_in_the_api(alice: httpx.Client, bob: httpx.Client) -> None:
    """Both run as hpcgate-svc on the cluster; hpcgate still shows each only their own."""
    job = run(alice, "sleep 300")
    hidden_from(bob, JOBS, job["id"])
    wait_for_job(alice, job["id"], lambda j: j["state"] == "RUNNING", system=SYSTEM)
    assert alice.delete(f"{JOBS}/{job['id']}").status_code == 202
    assert finish(alice, job)["state"] == "CANCELLED"


def test_status_routes_answer(alice: httpx.Client) -> None:
    partitions = {p["name"] for p in alice.get(f"{BASE}/partitions").json()}
    assert partitions == {"debug", "batch"}
    nodes = [n["name"] for n in alice.get(f"{BASE}/nodes").json()]
    assert nodes == ["node1", "node2", "node3", "node4"]
    reservations = alice.get(f"{BASE}/reservations")
    assert reservations.status_code == 200, reservations.text
    accounts = [(a["account"], a["user"]) for a in alice.get(f"{BASE}/accounts").json()]
    assert accounts == [("testacct", FUNCTIONAL)]  # the login's, not the gateway's (root)


def test_a_refused_submit_is_slurms_verdict(alice: httpx.Client) -> None:
    response = alice.post(JOBS, json={"script": "#!/bin/bash\ntrue\n", "partition": "nosuch"})
    assert response.status_code == 422, response.text
    assert "invalid partition" in response.json()["detail"].lower()


def test_files_go_over_sftp_and_allowed_commands(
    alice: httpx.Client, bob: httpx.Client, functional_account: FunctionalAccount
) -> None:
    """Each user has a directory of the functional account's as their root; hpcgate keeps
    them apart by their roots, the host by nothing (they are one account there)."""
    root = Path(alice.get(BASE).json()["roots"][0])
    assert root.name == "alice" and root.parent.parent == functional_account.home
    made = alice.post(f"{FILES}/mkdir", json={"path": str(root), "parents": True})
    assert made.status_code == 201, made.text
    data = os.urandom(1 << 20) + HOSTILE.encode()
    digest = hashlib.sha256(data).hexdigest()
    name = f"up {HOSTILE[:12]}.bin"
    sent = alice.put(f"{FILES}/upload", params={"path": name, "sha256": digest}, content=data)
    assert sent.status_code == 201, sent.text
    assert (root / name).stat().st_uid == pwd.getpwnam(FUNCTIONAL).pw_uid
    listed = alice.get(f"{FILES}/ls", params={"path": "."}).json()["entries"]
    assert (name, FUNCTIONAL) in [(e["name"], e["user"]) for e in listed]  # getent's name
    found = alice.get(f"{FILES}/checksum", params={"path": name}).json()  # sha256sum
    assert found["checksum"] == digest
    assert alice.get(f"{FILES}/download", params={"path": name}).content == data
    refused = bob.get(f"{FILES}/download", params={"path": str(root / name)})
    assert refused.status_code == 403, refused.text
    archive = {"source": name, "target": "a:b.tar.gz", "compression": "gzip"}
    task = finished(alice, alice.post(f"{FILES}/compress", json=archive))  # tar, checked
    assert task["state"] == "completed", task
    with tarfile.open(root / "a:b.tar.gz") as packed:
        assert packed.getnames() == [name]


def test_the_start_up_says_where_jobs_run(forced_gateway: GatewayProcess) -> None:
    """A root gateway whose systems are all SSH does not claim that jobs run as root."""
    said = (forced_gateway.home / "server.log").read_text(errors="replace")
    assert "every system is reached over SSH" in said
    assert "run as root" not in said
