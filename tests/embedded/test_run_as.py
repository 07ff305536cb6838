"""A root engine runs each job as the account its document names (``run_as``), never as
root: the script, its output files, its working directory and a ``script_path`` are all the
account's, seen with the account's permissions; cancel and time limits still end the whole
job. Real accounts (alice, bob), real processes."""

from __future__ import annotations

import json
import os
import pwd
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.embedded.engine import Engine, alive, read_pid
from tests.support.accounts import (
    UnixAccount,
    needs_root,
    own_directory,
    reachable_directory,
    unix_account,
)

pytestmark = needs_root


@pytest.fixture(scope="module")
def alice() -> UnixAccount:
    return unix_account("alice")


@pytest.fixture(scope="module")
def bob() -> UnixAccount:
    return unix_account("bob")


@pytest.fixture
def shared() -> Iterator[Path]:
    with reachable_directory() as path:
        yield path


def submit_as(
    engine: Engine, account: UnixAccount, workdir: Path, script: str, **fields: object
) -> str:
    return engine.submit(script, workdir=str(workdir), run_as=account.run_as(), **fields)


def test_a_job_runs_as_its_account(engine: Engine, alice: UnixAccount, shared: Path) -> None:
    home = own_directory(shared, alice)
    script = "#!/bin/sh\nid -u\nid -g\necho $USER $LOGNAME $HOME\ntouch made-here\n"
    job = engine.wait_final(submit_as(engine, alice, home, script))
    assert job["state"] == "COMPLETED", job
    out = Path(job["stdout"])
    who = [alice.name, alice.name, pwd.getpwuid(alice.uid).pw_dir]
    assert out.read_text().split() == [str(alice.uid), str(alice.gid), *who]
    for path in (out, Path(job["stderr"]), home / "made-here"):
        assert (path.stat().st_uid, path.stat().st_gid) == (alice.uid, alice.gid), path


def test_another_accounts_job_cannot_read_the_output(
    engine: Engine, alice: UnixAccount, bob: UnixAccount, shared: Path
) -> None:
    secret = engine.wait_final(
        submit_as(engine, alice, own_directory(shared, alice), "#!/bin/sh\necho alice-secret\n")
    )
    snoop = f"#!/bin/sh\ncat {secret['stdout']}\n"
    job = engine.wait_final(submit_as(engine, bob, own_directory(shared, bob), snoop))
    assert (job["state"], job["exit_code"]) == ("FAILED", 1)
    assert "Permission denied" in Path(job["stderr"]).read_text()
    assert "alice-secret" not in Path(job["stdout"]).read_text()


def test_outputs_are_opened_with_the_accounts_permissions(
    engine: Engine, alice: UnixAccount, shared: Path
) -> None:
    """Root could create /etc/hpcgate-owned: the account cannot, so the job fails."""
    target = Path("/etc") / f"hpcgate-{os.getpid()}.out"
    job_id = submit_as(
        engine, alice, own_directory(shared, alice), "#!/bin/sh\necho x\n", stdout=str(target)
    )
    job = engine.wait_final(job_id)
    assert job["state"] == "FAILED" and "cannot open the stdout file" in job["reason"]
    assert not target.exists()


def test_a_directory_the_account_cannot_enter_fails_the_job(
    engine: Engine, alice: UnixAccount, bob: UnixAccount, shared: Path
) -> None:
    bobs = own_directory(shared, bob)
    document = engine.document("#!/bin/sh\necho x\n", workdir=str(bobs), run_as=alice.run_as())
    refused = engine.cli("submit", stdin=json.dumps(document).encode())
    assert refused.returncode == 2 and b"working directory" in refused.stderr


def test_script_path_is_read_as_the_account(
    engine: Engine, alice: UnixAccount, shared: Path
) -> None:
    private = shared / "root-only.sh"
    private.write_text("#!/bin/sh\necho root's script\n")
    private.chmod(0o700)
    document = engine.document(
        None,
        script_path=str(private),
        workdir=str(own_directory(shared, alice)),
        run_as=alice.run_as(),
    )
    refused = engine.cli("submit", stdin=json.dumps(document).encode())
    assert refused.returncode == 2, refused
    assert b"cannot read script_path" in refused.stderr and b"Permission denied" in refused.stderr


def test_cancel_ends_the_accounts_whole_job(
    engine: Engine, alice: UnixAccount, shared: Path
) -> None:
    home = own_directory(shared, alice)
    job_id = submit_as(
        engine, alice, home, f"#!/bin/bash\nsleep 300 &\necho $! > {home}/child.pid\nwait\n"
    )
    child = read_pid(home / "child.pid")
    assert os.stat(f"/proc/{child}").st_uid == alice.uid
    engine.ok("cancel", job_id)
    assert engine.wait_final(job_id)["state"] == "CANCELLED"
    assert not alive(child)


def test_time_limit_ends_the_accounts_whole_job(
    engine: Engine, alice: UnixAccount, shared: Path
) -> None:
    home = own_directory(shared, alice)
    script = f"#!/bin/bash\nsleep 300 &\necho $! > {home}/child.pid\nwait\n"
    job_id = engine.submit(
        script, "--kill-wait", "1", workdir=str(home), run_as=alice.run_as(), time_limit=1
    )
    child = read_pid(home / "child.pid")
    assert engine.wait_final(job_id)["state"] == "TIMEOUT"
    assert not alive(child)


@pytest.mark.parametrize(
    "run_as",
    [
        {"name": "root", "uid": 0, "gid": 0, "groups": []},
        {"name": "x", "uid": -1, "gid": 1, "groups": []},
        {"name": "x", "uid": 2**32, "gid": 1, "groups": []},
        {"name": "x", "uid": True, "gid": 1, "groups": []},
        {"name": "x", "uid": 1001, "gid": 1001},
        "alice",
    ],
)
def test_bad_run_as_is_refused(engine: Engine, run_as: object) -> None:
    document = engine.document("#!/bin/sh\necho x\n", run_as=run_as)
    refused = engine.cli("submit", stdin=json.dumps(document).encode())
    assert refused.returncode == 2 and b"run_as" in refused.stderr, refused
    assert engine.status() == {}
