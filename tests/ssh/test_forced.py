"""hpcgate-forced behind a real sshd: a functional account whose key may only run
allowed programs, as argv, with no shell and no forwarding (``restrict,command=...``)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from tests.ssh.conftest import FUNCTIONAL as ACCOUNT
from tests.ssh.conftest import FunctionalAccount, Sshd


@pytest.fixture(scope="module")
def functional_key(functional_account: FunctionalAccount) -> Path:
    """A key of the functional account that runs only printf and id."""
    return functional_account.key("printf", "id")


def ssh(
    sshd: Sshd, key: Path, *remote: str, options: tuple[str, ...] = ()
) -> subprocess.CompletedProcess[str]:
    """The real OpenSSH client, as the functional account with ``key``."""
    argv = [*sshd.ssh_argv(ACCOUNT, key, *options), *remote]
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL
    )


def test_an_allowed_program_runs_as_the_functional_account(
    sshd: Sshd, functional_key: Path
) -> None:
    done = ssh(sshd, functional_key, shlex.join(["id", "-un"]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ACCOUNT


def test_arguments_arrive_verbatim_and_no_shell_reads_them(
    sshd: Sshd, functional_key: Path
) -> None:
    hostile = ["a; id", "$(id)", "`id`", "x > /tmp/forced-owned", "*", "new\nline"]
    done = ssh(sshd, functional_key, shlex.join(["printf", "%s\\0", *hostile]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\0")[:-1] == hostile
    assert not Path("/tmp/forced-owned").exists()


@pytest.mark.parametrize(
    ("remote", "why"),
    [
        (("id; id",), "not a plain argv"),
        (("id", "&&", "id"), "not a plain argv"),
        (("bash",), "'bash' is not allowed"),
        (("/usr/bin/id",), "'/usr/bin/id' is not allowed"),
        (("squeue",), "'squeue' is not allowed"),
        ((), "no command"),
    ],
)
def test_anything_else_is_refused(
    sshd: Sshd, functional_key: Path, remote: tuple[str, ...], why: str
) -> None:
    done = ssh(sshd, functional_key, *remote)
    assert done.returncode == 126, (done.returncode, done.stdout, done.stderr)
    assert why in done.stderr and done.stdout == ""


def test_port_forwarding_is_refused(sshd: Sshd, functional_key: Path) -> None:
    options = ("-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:127.0.0.1:22")
    done = ssh(sshd, functional_key, "id", options=options)
    assert done.returncode == 255, done.stderr
    assert "forwarding" in done.stderr.lower()


def test_sftp_is_refused(sshd: Sshd, functional_key: Path) -> None:
    argv = ["sftp", "-F", "/dev/null", "-P", str(sshd.port), "-b", "-", "-i", str(functional_key)]
    argv += ["-o", f"UserKnownHostsFile={sshd.known_hosts}", "-o", "BatchMode=yes"]
    argv += ["-o", "IdentitiesOnly=yes", f"{ACCOUNT}@{sshd.host}"]
    done = subprocess.run(argv, input="ls\n", capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
