"""The files API over SSH: a multi-user gateway (root) whose system is reached through the
test sshd (scripts/sshd) with certificates from its CA, every file operation an SFTP request
(or a command: checksums, names, sizes) in the caller's own login.

The multi-user files tests of the Slurm tier run here again unchanged (the system is called
``cluster`` in both): the same answers must come over SFTP as from the local helpers.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.slurm import test_slurm_files as local
from tests.slurm.test_slurm_files import FILES, home, put
from tests.support.gateway_process import GatewayProcess, new_gateway
from tests.support.jobs import ended, finished, submit, wait_for_job
from tests.support.slurm import ensure_cluster
from tests.support.sshd import Sshd

scratch = local.scratch

# The Slurm tier's multi-user files tests, over SSH this time.
test_roots_and_home_are_the_account_s = local.test_roots_and_home_are_the_account_s
test_files_are_made_and_read_as_the_account = local.test_files_are_made_and_read_as_the_account
test_the_kernel_refuses_what_the_account_may_not_do = (
    local.test_the_kernel_refuses_what_the_account_may_not_do
)
test_alice_and_bob_cannot_reach_each_other = local.test_alice_and_bob_cannot_reach_each_other
test_a_full_filesystem_is_507_and_leaves_nothing = (
    local.test_a_full_filesystem_is_507_and_leaves_nothing
)
test_tasks_run_their_programs_as_the_account = local.test_tasks_run_their_programs_as_the_account
test_special_files_and_outward_links_are_refused = (
    local.test_special_files_and_outward_links_are_refused
)
test_extraction_as_root_s_helper_makes_nothing_special = (
    local.test_extraction_as_root_s_helper_makes_nothing_special
)


def config(sshd: Sshd, identity: str = "ca") -> str:
    return f"""
[systems.cluster]
scheduler = "slurm"
transport = "ssh"
status_interval = 1

{sshd.table("cluster", identity)}
[users]
mode = "multi"
"""


@pytest.fixture(scope="module", params=["ca", "keys"])
def gateway(
    sshd: Sshd, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[GatewayProcess]:
    """The gateway logs in with certificates from the CA, then with the users' own keys."""
    if os.geteuid() != 0:
        pytest.skip("the multi-user gateway runs as root")
    ensure_cluster()
    server = new_gateway(tmp_path_factory.mktemp("ssh-files"), config(sshd, request.param))
    server.start()
    yield server
    server.stop()


# Not user_client(): a parametrized gateway must be asked for by name, not dynamically.
@pytest.fixture(scope="module")
def alice(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with gateway.client(gateway.token("alice")) as client:
        yield client


@pytest.fixture(scope="module")
def bob(gateway: GatewayProcess) -> Iterator[httpx.Client]:
    with gateway.client(gateway.token("bob")) as client:
        yield client


def problem(response: httpx.Response, status: int) -> dict[str, object]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, object] = response.json()
    return body


def test_every_file_request_went_over_sftp_as_the_caller(
    alice: httpx.Client, scratch: Path, sshd: Sshd
) -> None:
    assert put(alice, f"{scratch.name}/a.txt", b"a").status_code == 201
    log = sshd.log.read_text(errors="replace")
    assert "Starting session: subsystem 'sftp' for alice" in log


def test_a_job_runs_as_alice_and_its_output_is_read_as_her(
    alice: httpx.Client, gateway: GatewayProcess
) -> None:
    job = submit(alice, "cluster", script="#!/bin/bash\nid -un\n")
    done = wait_for_job(alice, job["id"], ended, system="cluster", timeout=60)
    assert done["state"] == "COMPLETED", done
    assert alice.get(f"/api/v1/systems/cluster/jobs/{job['id']}/output").text == "alice\n"


def test_download_ranges_and_conditions(alice: httpx.Client, scratch: Path) -> None:
    data = os.urandom(3 << 20)
    assert put(alice, f"{scratch.name}/big.bin", data).status_code == 201
    path = {"path": f"{scratch.name}/big.bin"}
    whole = alice.get(f"{FILES}/download", params=path)
    assert whole.status_code == 200 and whole.content == data
    tag = whole.headers["etag"]
    part = alice.get(
        f"{FILES}/download", params=path, headers={"Range": "bytes=1000000-", "If-Range": tag}
    )
    assert part.status_code == 206 and part.content == data[1000000:]
    assert part.headers["content-range"] == f"bytes 1000000-{len(data) - 1}/{len(data)}"
    same = alice.get(f"{FILES}/download", params=path, headers={"If-None-Match": tag})
    assert same.status_code == 304
    beyond = alice.get(f"{FILES}/download", params=path, headers={"Range": f"bytes={len(data)}-"})
    problem(beyond, 416)
    os.utime(scratch / "big.bin", (1, 1))  # changed since: the range no longer applies
    stale = alice.get(
        f"{FILES}/download", params=path, headers={"Range": "bytes=10-", "If-Range": tag}
    )
    assert stale.status_code == 200 and stale.content == data


def test_listing_stat_and_links(alice: httpx.Client, scratch: Path) -> None:
    (scratch / "d" / "e").mkdir(parents=True)
    (scratch / "d" / "e" / "deep.txt").write_text("deep\n")
    (scratch / ".hidden").write_text("h")
    (scratch / "link").symlink_to("d/e/deep.txt")
    subprocess.run(["chown", "-R", "-h", "alice:alice", str(scratch)], check=True)
    entries = alice.get(f"{FILES}/ls", params={"path": scratch.name}).json()["entries"]
    assert [(e["name"], e["type"]) for e in entries] == [("d", "directory"), ("link", "symlink")]
    link = entries[1]
    assert link["link_target"] == "d/e/deep.txt" and link["user"] == "alice"
    assert link["changed"] is None  # not carried by SFTP
    deep = {"path": scratch.name, "hidden": "true", "depth": "3", "numeric": "true"}
    every = alice.get(f"{FILES}/ls", params=deep).json()["entries"]
    names = [e["path"].removeprefix(f"{scratch}/") for e in every]
    assert names == [".hidden", "d", "d/e", "d/e/deep.txt", "link"]
    assert all(e["user"] is None and e["uid"] == pwd.getpwnam("alice").pw_uid for e in every)
    followed = alice.get(
        f"{FILES}/stat", params={"path": f"{scratch.name}/link", "dereference": "true"}
    )
    assert followed.json()["type"] == "file" and followed.json()["size"] == 5
    problem(alice.get(f"{FILES}/ls", params={"path": f"{scratch.name}/.hidden"}), 409)
    problem(alice.get(f"{FILES}/ls", params={"path": f"{scratch.name}/nothing"}), 404)


def test_contents_checksums_and_types(alice: httpx.Client, scratch: Path) -> None:
    text = "".join(f"line {n}\n" for n in range(1, 101)).encode()
    assert put(alice, f"{scratch.name}/t.txt", text).status_code == 201
    at = {"path": f"{scratch.name}/t.txt"}
    head = alice.get(f"{FILES}/head", params={**at, "lines": 3}).json()
    assert head["content"] == "line 1\nline 2\nline 3\n"
    tail = alice.get(f"{FILES}/tail", params={**at, "lines": 2}).json()
    assert tail["content"] == "line 99\nline 100\n"
    assert alice.get(f"{FILES}/tail", params={**at, "bytes": 4}).json()["content"] == "100\n"
    view = alice.get(f"{FILES}/view", params={**at, "offset": 7, "size": 6}).json()
    assert view["content"] == "line 2"
    for algorithm in ("sha256", "sha512", "sha1", "md5", "blake2b"):
        found = alice.get(f"{FILES}/checksum", params={**at, "algorithm": algorithm}).json()
        assert found["checksum"] == hashlib.new(algorithm, text).hexdigest(), algorithm
    kinds = alice.get(f"{FILES}/file", params=at).json()
    assert (kinds["type"], kinds["mime_type"]) == ("file", "text/plain")
    folder = alice.get(f"{FILES}/file", params={"path": scratch.name}).json()
    assert (folder["type"], folder["mime_type"]) == ("directory", None)
    problem(alice.get(f"{FILES}/checksum", params={"path": scratch.name}), 409)


def test_changes_and_their_conflicts(alice: httpx.Client, scratch: Path) -> None:
    made = alice.post(f"{FILES}/mkdir", json={"path": f"{scratch.name}/a/b/c", "parents": True})
    assert made.status_code == 201 and (scratch / "a" / "b" / "c").is_dir()
    problem(alice.post(f"{FILES}/mkdir", json={"path": f"{scratch.name}/a"}), 409)
    problem(alice.post(f"{FILES}/mkdir", json={"path": f"{scratch.name}/x/y"}), 404)
    problem(alice.delete(f"{FILES}/rm", params={"path": f"{scratch.name}/a"}), 409)
    assert put(alice, f"{scratch.name}/f.txt", b"one").status_code == 201
    problem(put(alice, f"{scratch.name}/f.txt", b"two"), 409)
    assert (scratch / "f.txt").read_bytes() == b"one"
    assert put(alice, f"{scratch.name}/f.txt", b"two", overwrite="true").status_code == 201
    assert (scratch / "f.txt").read_bytes() == b"two"
    problem(put(alice, f"{scratch.name}/a", b"x", overwrite="true"), 409)
    assert [p.name for p in scratch.iterdir() if p.name.startswith(".")] == []
    mode = alice.put(f"{FILES}/chmod", json={"path": f"{scratch.name}/f.txt", "mode": "640"})
    assert mode.json()["mode"] == "0640" and (scratch / "f.txt").stat().st_mode & 0o777 == 0o640
    problem(alice.put(f"{FILES}/chown", json={"path": scratch.name, "owner": "nosuchuser"}), 400)
    sneaky = alice.put(f"{FILES}/chown", json={"path": scratch.name, "owner": "-s../x"})
    assert sneaky.status_code in (400, 422), sneaky.text  # never an option of getent
    same = alice.put(f"{FILES}/chown", json={"path": f"{scratch.name}/f.txt", "group": "alice"})
    assert same.status_code == 200 and same.json()["group"] == "alice"
    link = alice.post(f"{FILES}/symlink", json={"path": f"{scratch.name}/l", "target": "f.txt"})
    assert link.status_code == 201 and os.readlink(scratch / "l") == str(scratch / "f.txt")
    problem(alice.post(f"{FILES}/symlink", json={"path": f"{scratch.name}/l", "target": "a"}), 409)
    removed = alice.delete(f"{FILES}/rm", params={"path": f"{scratch.name}/a", "recursive": "true"})
    assert removed.status_code == 204 and not (scratch / "a").exists()


def test_symlinks_out_of_the_roots_are_never_followed(alice: httpx.Client, scratch: Path) -> None:
    (scratch / "escape").symlink_to("/etc")
    (scratch / "leak").symlink_to(home("bob"))
    for path in ("escape/passwd", "leak", "escape"):
        problem(alice.get(f"{FILES}/download", params={"path": f"{scratch.name}/{path}"}), 403)
    problem(put(alice, f"{scratch.name}/escape/new.txt", b"x"), 403)
    problem(alice.post(f"{FILES}/mkdir", json={"path": f"{scratch.name}/leak/d"}), 403)
    problem(alice.get(f"{FILES}/stat", params={"path": "/etc/passwd"}), 403)
    problem(alice.get(f"{FILES}/stat", params={"path": f"{scratch.name}/../../etc"}), 400)
    assert not Path("/etc/new.txt").exists() and not (home("bob") / "d").exists()


def test_a_resumable_upload_in_chunks(alice: httpx.Client, scratch: Path) -> None:
    data = os.urandom(5 << 20)
    target = f"{scratch.name}/resumed.bin"
    wanted = {"path": target, "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    begun = alice.post(f"{FILES}/uploads", json=wanted)
    assert begun.status_code == 201, begun.text
    upload = f"{FILES}/uploads/{begun.json()['id']}"
    first = alice.put(upload, params={"offset": 0}, content=data[: 2 << 20])
    assert first.json()["offset"] == 2 << 20 and not (scratch / "resumed.bin").exists()
    wrong = alice.put(upload, params={"offset": 0}, content=data[:10])
    assert problem(wrong, 409)["offset"] == 2 << 20
    assert alice.get(upload).json()["offset"] == 2 << 20
    done = alice.put(upload, params={"offset": 2 << 20}, content=data[2 << 20 :])
    assert done.status_code == 200 and done.json()["complete"], done.text
    assert (scratch / "resumed.bin").read_bytes() == data
    assert [p.name for p in scratch.iterdir()] == ["resumed.bin"]


def test_copy_compress_and_extract_are_tasks(alice: httpx.Client, scratch: Path) -> None:
    assert alice.post(f"{FILES}/mkdir", json={"path": f"{scratch.name}/src"}).status_code == 201
    assert put(alice, f"{scratch.name}/src/one.txt", b"1" * 100_000).status_code == 201
    archive = {
        "source": f"{scratch.name}/src",
        "target": f"{scratch.name}/s.tar.xz",
        "compression": "xz",
    }
    assert finished(alice, alice.post(f"{FILES}/compress", json=archive))["state"] == "completed"
    unpack = {
        "source": f"{scratch.name}/s.tar.xz",
        "target": f"{scratch.name}/out",
        "compression": "xz",
    }
    assert finished(alice, alice.post(f"{FILES}/extract", json=unpack))["state"] == "completed"
    assert (scratch / "out" / "src" / "one.txt").read_bytes() == b"1" * 100_000


def ssh_children_of(pid: int) -> list[int]:
    """The ``ssh`` processes ``pid`` runs (a long transfer's, ``ssh.bulk``)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            name = (entry / "comm").read_text().strip()
        except (OSError, IndexError, ValueError):
            continue
        if name == "ssh" and parent == pid:
            found.append(int(entry.name))
    return found


def test_long_transfers_go_over_openssh_s_client_whole(
    alice: httpx.Client, scratch: Path, sshd: Sshd, gateway: GatewayProcess
) -> None:
    """Past 8 MiB the default (``ssh.bulk = "auto"``) moves the bytes over ``ssh``: an
    upload, a download and a resumable upload arrive whole, each over a login of its own
    (the pooled connection needs none), and no ssh is left running."""
    logged = sshd.log.stat().st_size
    data = os.urandom(20 << 20)
    digest = hashlib.sha256(data).hexdigest()
    sent = put(alice, f"{scratch.name}/long.bin", data)
    assert sent.status_code == 201 and sent.json()["sha256"] == digest, sent.text
    got = alice.get(f"{FILES}/download", params={"path": f"{scratch.name}/long.bin"})
    assert got.status_code == 200 and got.content == data
    wanted = {"path": f"{scratch.name}/resumed.bin", "size": len(data), "sha256": digest}
    upload = f"{FILES}/uploads/{alice.post(f'{FILES}/uploads', json=wanted).json()['id']}"
    assert alice.put(upload, params={"offset": 0}, content=data[: 11 << 20]).status_code == 200
    done = alice.put(upload, params={"offset": 11 << 20}, content=data[11 << 20 :])
    assert done.status_code == 200 and done.json()["complete"], done.text
    assert (scratch / "resumed.bin").read_bytes() == data
    assert gateway.process is not None and ssh_children_of(gateway.process.pid) == []
    with sshd.log.open("rb") as log:
        log.seek(logged)
        logins = [line for line in log if b"Accepted " in line and b" for alice " in line]
    assert len(logins) >= 3


def read_killing_ssh(
    client: httpx.Client, params: dict[str, str], gateway: int, received: bytearray
) -> None:
    """A download read into ``received``; past 16 MiB the gateway's ssh is killed (once)."""
    killed = False
    with client.stream("GET", f"{FILES}/download", params=params) as answer:
        for chunk in answer.iter_bytes():
            received += chunk
            if not killed and len(received) > 16 << 20 and (ssh := ssh_children_of(gateway)):
                os.kill(ssh[0], 9)
                killed = True


def test_a_killed_ssh_cuts_the_download_and_the_next_one_is_whole(
    alice: httpx.Client, scratch: Path, gateway: GatewayProcess
) -> None:
    """Killing the ssh under a long download ends that answer short (never with wrong
    bytes); the gateway reaps it and serves the next download whole."""
    assert gateway.process is not None
    data = os.urandom(96 << 20)
    (scratch / "big.bin").write_bytes(data)
    shutil.chown(scratch / "big.bin", "alice", "alice")
    params = {"path": f"{scratch.name}/big.bin"}
    received = bytearray()
    with pytest.raises(httpx.HTTPError):
        read_killing_ssh(alice, params, gateway.process.pid, received)
    assert len(received) < len(data) and data.startswith(bytes(received))
    for _ in range(100):
        if not ssh_children_of(gateway.process.pid):
            break
        time.sleep(0.05)
    assert ssh_children_of(gateway.process.pid) == []
    again = alice.get(f"{FILES}/download", params=params)
    assert again.status_code == 200 and again.content == data
