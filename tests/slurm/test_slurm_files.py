"""The files API in multi-user mode: every access runs as the caller's own Unix account.

The gateway runs as root; alice and bob are real accounts (scripts/slurm) whose homes are
their only root (the default ``roots = ["{home}"]``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hpcgate.accounts import Accounts
from hpcgate.config import UsersConfig
from hpcgate.model.errors import CommandTimeout
from hpcgate.transports.helper_pool import HelperPool
from tests.support.jobs import finished
from tests.support.races import INSIDE, OUTSIDE, race_tasks, results, swapped

FILES = "/api/v1/systems/cluster/files"


def home(user: str) -> Path:
    return Path(pwd.getpwnam(user).pw_dir)


def put(client: httpx.Client, path: str, data: bytes, **params: str) -> httpx.Response:
    return client.put(f"{FILES}/upload", params={"path": path, **params}, content=data)


@pytest.fixture
def scratch(alice: httpx.Client) -> Iterator[Path]:
    """A fresh directory in alice's home, made through the API (so owned by alice)."""
    name = f"files-{os.urandom(4).hex()}"
    assert alice.post(f"{FILES}/mkdir", json={"path": name}).status_code == 201
    yield home("alice") / name
    subprocess.run(["rm", "-rf", "--", str(home("alice") / name)], check=True)


def test_roots_and_home_are_the_account_s(alice: httpx.Client) -> None:
    info = alice.get("/api/v1/systems/cluster").json()
    assert info["roots"] == [str(home("alice"))] and info["home"] == str(home("alice"))


def test_files_are_made_and_read_as_the_account(alice: httpx.Client, scratch: Path) -> None:
    data = os.urandom(2 << 20)
    done = put(alice, f"{scratch.name}/data.bin", data, sha256=hashlib.sha256(data).hexdigest())
    assert done.status_code == 201, done.text
    written = scratch / "data.bin"
    assert written.stat().st_uid == pwd.getpwnam("alice").pw_uid
    assert written.stat().st_gid == pwd.getpwnam("alice").pw_gid
    got = alice.get(f"{FILES}/download", params={"path": str(written)})
    assert got.status_code == 200 and got.content == data
    listing = alice.get(f"{FILES}/ls", params={"path": scratch.name}).json()["entries"]
    assert [(e["name"], e["user"]) for e in listing] == [("data.bin", "alice")]


def test_special_files_and_outward_links_are_refused(alice: httpx.Client, scratch: Path) -> None:
    account = pwd.getpwnam("alice")
    os.mkfifo(scratch / "pipe")
    os.chown(scratch / "pipe", account.pw_uid, account.pw_gid)
    for route in ("head", "tail", "checksum", "download"):
        got = alice.get(f"{FILES}/{route}", params={"path": f"{scratch}/pipe"}, timeout=20)
        assert got.status_code == 400, got.text
        assert "FIFO" in got.json()["detail"]
    (scratch / "out").symlink_to("/etc")
    got = alice.get(f"{FILES}/head", params={"path": f"{scratch}/out/hostname"}, timeout=20)
    assert got.status_code == 403, got.text


def test_the_kernel_refuses_what_the_account_may_not_do(alice: httpx.Client, scratch: Path) -> None:
    private = scratch / "root-only.txt"
    private.write_text("root's\n")  # written by the test, as root
    private.chmod(0o600)
    refused = alice.get(f"{FILES}/download", params={"path": str(private)})
    assert refused.status_code == 403, refused.text
    assert alice.get(f"{FILES}/stat", params={"path": str(private)}).json()["user"] == "root"
    locked = scratch / "locked"
    locked.mkdir(mode=0o755)  # root's directory inside alice's
    (locked / "f").write_text("x")
    assert alice.delete(f"{FILES}/rm", params={"path": str(locked / "f")}).status_code == 403
    assert (locked / "f").exists()
    assert put(alice, str(locked / "g"), b"x").status_code == 403
    chown = alice.put(f"{FILES}/chown", json={"path": f"{scratch.name}", "group": "root"})
    assert chown.status_code == 403, chown.text


def test_alice_and_bob_cannot_reach_each_other(
    alice: httpx.Client, bob: httpx.Client, scratch: Path
) -> None:
    assert put(alice, f"{scratch.name}/note.txt", b"alice's").status_code == 201
    for path in (str(scratch / "note.txt"), str(home("alice"))):
        assert bob.get(f"{FILES}/download", params={"path": path}).status_code == 403
        assert bob.get(f"{FILES}/ls", params={"path": path}).status_code == 403
    assert put(bob, str(scratch / "planted.txt"), b"x").status_code == 403
    (home("bob") / "to-alice").unlink(missing_ok=True)
    (home("bob") / "to-alice").symlink_to(scratch)
    try:
        through = bob.get(f"{FILES}/ls", params={"path": "to-alice"})
        assert through.status_code == 403, through.text
    finally:
        (home("bob") / "to-alice").unlink()
    assert not (scratch / "planted.txt").exists()


def test_a_full_filesystem_is_507_and_leaves_nothing(alice: httpx.Client, scratch: Path) -> None:
    small = scratch / "small"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(small)],
        capture_output=True,
        text=True,
    )
    assert mounted.returncode == 0, f"this test needs root to mount a tmpfs: {mounted.stderr}"
    try:
        os.chown(small, pwd.getpwnam("alice").pw_uid, pwd.getpwnam("alice").pw_gid)
        full = put(alice, f"{scratch.name}/small/big.bin", os.urandom(2 << 20))
        assert full.status_code == 507, full.text
        assert full.headers["content-type"] == "application/problem+json"
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_tasks_run_their_programs_as_the_account(alice: httpx.Client, scratch: Path) -> None:
    assert put(alice, f"{scratch.name}/tree/f.txt", b"x").status_code == 404
    alice.post(f"{FILES}/mkdir", json={"path": f"{scratch.name}/tree"})
    assert put(alice, f"{scratch.name}/tree/f.txt", b"data").status_code == 201
    copy = {"source": f"{scratch.name}/tree", "target": f"{scratch.name}/copy"}
    assert finished(alice, alice.post(f"{FILES}/cp", json=copy))["state"] == "completed"
    alice_uid = pwd.getpwnam("alice").pw_uid
    assert (scratch / "copy" / "f.txt").stat().st_uid == alice_uid
    archive = {"source": f"{scratch.name}/copy", "target": f"{scratch.name}/c.tar.gz"}
    assert finished(alice, alice.post(f"{FILES}/compress", json=archive))["state"] == "completed"
    assert (scratch / "c.tar.gz").stat().st_uid == alice_uid
    locked = scratch / "locked-dir"
    locked.mkdir(mode=0o755)  # root's
    into = {"source": f"{scratch.name}/c.tar.gz", "target": f"{scratch.name}/locked-dir/x"}
    refused = alice.post(f"{FILES}/extract", json=into)  # alice may not write there
    assert refused.status_code == 403, refused.text
    assert not (locked / "x").exists()


def test_tasks_racing_a_swapped_directory_stay_in_the_account_s_root(
    alice: httpx.Client, scratch: Path
) -> None:
    """As tests/api's race, with a root gateway: the descriptors are opened by alice's
    file helper, and her programs run behind the fence as alice. The outside directory
    is alice's own, so only the confinement, not her permissions, keeps her out of it."""
    outside = Path(tempfile.mkdtemp(prefix="hpcgate-outside-"))
    alice_ids = (pwd.getpwnam("alice").pw_uid, pwd.getpwnam("alice").pw_gid)
    try:
        (scratch / "out").mkdir()
        (scratch / "plain.txt").write_bytes(INSIDE)
        for made in (scratch / "out", scratch / "plain.txt"):
            os.chown(made, *alice_ids)
        with swapped(scratch, outside, alice_ids):
            tasks = race_tasks(alice, FILES, scratch.name, 60)
        assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
        copies, archived = results(scratch / "out")
        assert OUTSIDE not in copies + archived
        assert INSIDE in copies + archived
        assert any(task["state"] == "completed" for task in tasks)
    finally:
        shutil.rmtree(outside)


def tar_member(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644
) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.devmajor, info.devminor = kind, link, mode, 1, 3
    return info


def write_tar(path: Path, members: list[tarfile.TarInfo]) -> None:
    with tarfile.open(path, "w:gz") as made:
        for info in members:
            data = b"#!/bin/sh\n" if info.isreg() else b""
            info.size = len(data)
            made.addfile(info, io.BytesIO(data))


def test_extraction_as_root_s_helper_makes_nothing_special(
    alice: httpx.Client, scratch: Path
) -> None:
    """Issue 14.2/14.3 with a root gateway: members are made as alice, and only vetted ones."""
    write_tar(
        scratch / "good.tgz",
        [tar_member("t/run", mode=0o6777), tar_member("t/l", tarfile.SYMTYPE, "run")],
    )
    unpack = {"source": f"{scratch.name}/good.tgz", "target": f"{scratch.name}/out"}
    task = finished(alice, alice.post(f"{FILES}/extract", json=unpack))
    assert task["state"] == "completed", task
    made = (scratch / "out" / "t" / "run").stat()
    assert made.st_uid == pwd.getpwnam("alice").pw_uid and stat.S_IMODE(made.st_mode) == 0o755
    assert os.readlink(scratch / "out" / "t" / "l") == "run"
    assert alice.post(f"{FILES}/extract", json=unpack).status_code == 409
    for bad in (
        tar_member("pipe", tarfile.FIFOTYPE),
        tar_member("null", tarfile.CHRTYPE),
        tar_member("disk", tarfile.BLKTYPE),
        tar_member("evil", tarfile.SYMTYPE, "/etc"),
    ):
        write_tar(scratch / "bad.tgz", [tar_member("a.txt"), bad, tar_member("evil/x")])
        into = {"source": f"{scratch.name}/bad.tgz", "target": f"{scratch.name}/bad"}
        task = finished(alice, alice.post(f"{FILES}/extract", json=into))
        assert task["state"] == "failed", task
        assert f"archive member {bad.name!r} refused" in task["error"]["detail"]
        assert not (scratch / "bad").exists()
    assert not Path("/etc/x").exists()


def helpers() -> list[int]:
    """The file helpers this test process started itself."""
    found = []
    for entry in os.listdir("/proc"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            command = Path(f"/proc/{entry}/cmdline").read_bytes()
            if int(fields[1]) == os.getpid() and b"hpcgate.transports.fshelper" in command:
                found.append(int(entry))
    return found


def test_a_fifo_is_refused_at_once_and_never_blocks_a_helper(scratch: Path) -> None:
    account = Accounts(UsersConfig(), multi=True).lookup("alice", "alice")
    fifo = scratch / "fifo"
    os.mkfifo(fifo, 0o666)
    pool = HelperPool(timeout=5.0)
    try:
        started = time.monotonic()
        answer, fd = pool.ask(account, {"op": "open_read", "args": {"path": str(fifo)}}, True)
        assert time.monotonic() - started < 2 and fd < 0
        assert not answer["ok"] and "FIFO" in answer["message"]
    finally:
        pool.close()


def test_a_stuck_file_helper_is_dropped_after_its_timeout(scratch: Path) -> None:
    """A helper that does not answer (here: stopped) costs one timeout, then the pool
    starts a fresh helper for the next request."""
    account = Accounts(UsersConfig(), multi=True).lookup("alice", "alice")
    pool = HelperPool(timeout=1.0)
    try:
        answer, _ = pool.ask(account, {"op": "lstat", "args": {"path": str(scratch)}}, False)
        assert answer["ok"]
        stopped = helpers()
        assert stopped
        for pid in stopped:
            os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        with pytest.raises(CommandTimeout):
            pool.ask(account, {"op": "lstat", "args": {"path": str(scratch)}}, False)
        assert time.monotonic() - started < 5
        answer, _ = pool.ask(account, {"op": "lstat", "args": {"path": str(scratch)}}, False)
        assert answer["ok"] and answer["result"]["type"] == "directory"
    finally:
        pool.close()
