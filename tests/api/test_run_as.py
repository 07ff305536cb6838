"""A gateway that runs as root never runs a user's job as root: on the embedded default each
user's jobs run as the user's own Unix account (multi-user, like Slurm), its output belongs
to that account, no other account's job can read it, cancel and time limits still end the
whole job, and a user with no account is refused with a 403 that says why. Real accounts
(alice, bob), a real gateway process, real jobs."""

from __future__ import annotations

import os
import pwd
import stat
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine
from sqlalchemy.orm import Session

from hpcgate.model.jobs import JobSpec
from hpcgate.store.tables import JobRow
from tests.embedded.engine import alive
from tests.support.accounts import needs_root, passable, unix_account
from tests.support.gateway_process import GatewayProcess, new_gateway, user_client
from tests.support.jobs import ended, submit, wait_for_job

pytestmark = needs_root
SYSTEM = "/api/v1/systems/local"
JOBS = f"{SYSTEM}/jobs"
DEFAULT = '[systems.local]\nscheduler = "embedded"\nstatus_interval = 0.2\nslots = 4\n'
NO_FALLBACK = '[users]\nmode = "auto"\n'  # the default, named: no fallback for the tests


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayProcess]:
    """The embedded default on a root gateway: no [users] table, so no fallback account."""
    gateway = new_gateway(tmp_path_factory.mktemp("run-as") / "home", DEFAULT + NO_FALLBACK)
    gateway.start()
    yield gateway
    gateway.stop()


alice = user_client("alice", "server")
bob = user_client("bob", "server")


def uid(name: str) -> int:
    return pwd.getpwnam(name).pw_uid


def run(client: httpx.Client, script: str, **spec: Any) -> dict[str, Any]:
    return wait_for_job(client, submit(client, script=script, **spec)["id"], ended)


def test_the_gateway_says_jobs_run_as_each_user(
    alice: httpx.Client, server: GatewayProcess
) -> None:
    assert alice.get(SYSTEM).json()["run_as"] == "user"
    assert [s["run_as"] for s in alice.get("/api/v1/systems").json()] == ["user"]
    assert "multi-user mode" in server.log() and "never as root" in server.log()


def test_a_job_runs_as_the_users_account(alice: httpx.Client) -> None:
    done = run(alice, "#!/bin/sh\nid -u\n")
    assert done["state"] == "COMPLETED", done
    assert alice.get(f"{JOBS}/{done['id']}/output").text == f"{uid('alice')}\n"
    out = Path(str(done["stdout"]))
    assert out.stat().st_uid == uid("alice") and out.parent.stat().st_uid == uid("alice")
    head = alice.get(f"{SYSTEM}/files/head", params={"path": out.name})  # read as its owner
    assert head.status_code == 200 and head.json()["content"] == f"{uid('alice')}\n"


def test_another_user_cannot_read_the_output(alice: httpx.Client, bob: httpx.Client) -> None:
    secret = run(alice, "#!/bin/sh\necho alice-secret\n")
    path = str(secret["stdout"])
    answer = bob.get(f"{SYSTEM}/files/head", params={"path": path})
    assert (
        answer.status_code == 403 and answer.headers["content-type"] == "application/problem+json"
    )
    snoop = run(bob, f"#!/bin/sh\ncat {path}\nls {Path(path).parent}\n")
    assert (snoop["state"], snoop["exit_code"]) == ("FAILED", 2)
    assert "alice-secret" not in bob.get(f"{JOBS}/{snoop['id']}/output").text
    errors = bob.get(f"{JOBS}/{snoop['id']}/output", params={"stream": "stderr"}).text
    assert errors.count("Permission denied") == 2, errors


def test_jobs_cannot_read_the_gateways_own_files(bob: httpx.Client, server: GatewayProcess) -> None:
    home = server.home
    assert stat.S_IMODE(home.stat().st_mode) == 0o711
    assert stat.S_IMODE((home / "hpcgate.db").stat().st_mode) == 0o600
    script = f"#!/bin/sh\ncat {home}/hpcgate.db {home}/admin-token\nls {home}/systems/local/spool\n"
    snoop = run(bob, script)
    assert snoop["state"] == "FAILED"
    errors = bob.get(f"{JOBS}/{snoop['id']}/output", params={"stream": "stderr"}).text
    assert errors.count("Permission denied") == 3, errors


def test_script_path_is_read_as_the_user(alice: httpx.Client, server: GatewayProcess) -> None:
    private = server.home / f"root-only-{uuid.uuid4().hex[:6]}.sh"
    private.write_text("#!/bin/sh\necho root's\n")
    private.chmod(0o700)
    answer = alice.post(JOBS, json={"script_path": str(private)})
    assert answer.status_code == 422, answer.text
    assert "Permission denied" in answer.json()["detail"]


def test_cancel_ends_the_users_whole_job(alice: httpx.Client, server: GatewayProcess) -> None:
    own = server.home / "work" / "alice"
    job = submit(alice, script="#!/bin/bash\nsleep 300 &\necho $! > child.pid\nwait\n")
    wait_for_job(alice, job["id"], lambda j: (own / "child.pid").exists())
    child = int((own / "child.pid").read_text())
    assert os.stat(f"/proc/{child}").st_uid == uid("alice")
    assert alice.delete(f"{JOBS}/{job['id']}").status_code == 202
    assert wait_for_job(alice, job["id"], ended)["state"] == "CANCELLED"
    assert not alive(child)


def test_time_limit_ends_the_users_whole_job(alice: httpx.Client, server: GatewayProcess) -> None:
    own = server.home / "work" / "alice"
    script = "#!/bin/bash\nsleep 300 &\necho $! > limited.pid\nwait\n"
    job = submit(alice, script=script, time_limit=1)
    assert wait_for_job(alice, job["id"], ended)["state"] == "TIMEOUT"
    child = int((own / "limited.pid").read_text())
    assert not alive(child)


def test_a_user_with_no_account_is_refused_saying_why(server: GatewayProcess) -> None:
    name = f"nobody{uuid.uuid4().hex[:8]}"
    with server.client(server.token(name)) as stranger:
        for answer in (
            stranger.post(JOBS, json={"script": "#!/bin/sh\nid\n"}),
            stranger.get(f"{SYSTEM}/files/ls", params={"path": "."}),
        ):
            assert answer.status_code == 403, answer.text
            assert answer.headers["content-type"] == "application/problem+json"
            assert "no Unix account" in answer.json()["detail"]
            assert "never as root" in answer.json()["detail"]
        assert stranger.get(JOBS).json()["items"] == []  # nothing was recorded
    assert not (server.home / "work" / name).exists()


def test_a_fallback_account_runs_users_with_no_account(tmp_path: Path) -> None:
    fallback = unix_account("hpcgate-fallback")
    config = DEFAULT + '[users]\nfallback = "hpcgate-fallback"\n'
    gateway = new_gateway(tmp_path / "home", config)
    gateway.start()
    try:
        with gateway.client(gateway.token("carol-without-account")) as carol:
            done = run(carol, "#!/bin/sh\nid -u\n")
            assert carol.get(f"{JOBS}/{done['id']}/output").text == f"{fallback.uid}\n"
            assert done["working_directory"] == str(gateway.home / "work" / "carol-without-account")
        assert "fallback account 'hpcgate-fallback'" in gateway.log()
    finally:
        gateway.stop()


def _crashed_submit(home: Path, workdir: Path, script: str) -> None:
    """The row a submit leaves when the gateway dies before the scheduler's answer: no job
    id, made long ago (so the watcher settles it at once), owned by alice."""
    engine = create_engine(f"sqlite:///{home / 'hpcgate.db'}")
    with Session(engine) as session, session.begin():
        long_ago = datetime.now(UTC) - timedelta(hours=1)
        session.add(
            JobRow(
                system="local", owner="alice", state="PENDING", submit_time=long_ago,
                working_directory=str(workdir), tag=uuid.uuid4().hex,
                spec=JobSpec(script=script).model_dump_json(), created_at=long_ago,
            )
        )  # fmt: skip
    engine.dispose()


def test_a_submit_settled_after_a_crash_runs_as_its_owner_not_as_root(
    tmp_path: Path,
) -> None:
    """On the embedded scheduler the watcher settles a lost submit by submitting it again
    (its tag makes that idempotent): as the owner's account, as the request was."""
    gateway = new_gateway(tmp_path / "home", DEFAULT + NO_FALLBACK)
    gateway.start()  # made its database
    gateway.stop()
    workdir = tmp_path / "alice-work"
    workdir.mkdir()
    os.chown(workdir, uid("alice"), pwd.getpwnam("alice").pw_gid)
    passable(workdir)
    _crashed_submit(gateway.home, workdir, "#!/bin/sh\nid -u\n")
    gateway.start()
    try:
        with gateway.client(gateway.token("alice")) as alice:
            deadline = time.monotonic() + 60
            while not (listed := alice.get(JOBS).json()["items"]) or not ended(listed[0]):
                assert time.monotonic() < deadline, listed
                time.sleep(0.2)
            job = listed[0]
            assert job["state"] == "COMPLETED", job
            assert alice.get(f"{JOBS}/{job['id']}/output").text == f"{uid('alice')}\n"
            assert Path(str(job["stdout"])).stat().st_uid == uid("alice")
    finally:
        gateway.stop()
