"""hpcgate-forced behind a real sshd: a functional account whose key may only run
allowed programs, as argv, with no shell and no forwarding (``restrict,command=...``)."""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
import uuid
from pathlib import Path

import pytest

from hpcgate.files.bulk import compress_argv
from hpcgate.model.commands import Command
from hpcgate.transports.ssh import command_line
from tests.support.sshd import FORCED, FunctionalAccount, Sshd
from tests.support.sshd import FUNCTIONAL as ACCOUNT


@pytest.fixture(scope="module")
def functional_key(functional_account: FunctionalAccount) -> Path:
    """A key of the functional account that runs only printf and id."""
    return functional_account.key("printf", "id")


@pytest.fixture(scope="module")
def default_key(functional_account: FunctionalAccount) -> Path:
    """A key of the functional account with the default programs and SFTP: the gateway's."""
    return functional_account.key()


@pytest.fixture(scope="module")
def no_sftp_key(functional_account: FunctionalAccount) -> Path:
    """A key whose forced command is ``--allow id --no-sftp``."""
    key = functional_account.keys / "no-sftp"
    argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)]
    subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
    entry = shlex.join(["/usr/bin/python3", "-I", str(FORCED), "--allow", "id", "--no-sftp"])
    with functional_account.authorized_keys.open("a") as authorized:
        authorized.write(f'restrict,command="{entry}" {key.with_suffix(".pub").read_text()}')
    return key


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


def sftp(sshd: Sshd, key: Path, batch: str) -> subprocess.CompletedProcess[str]:
    """The real OpenSSH sftp client, as the functional account with ``key``, running the
    ``batch`` commands (``-b -``: the first that fails ends it, with status 1)."""
    argv = ["sftp", "-F", "/dev/null", "-P", str(sshd.port), "-b", "-", "-i", str(key)]
    argv += ["-o", f"UserKnownHostsFile={sshd.known_hosts}", "-o", "BatchMode=yes"]
    argv += ["-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"]
    argv += ["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"]
    argv += [f"{ACCOUNT}@{sshd.host}"]
    return subprocess.run(argv, input=batch, capture_output=True, text=True, timeout=30)


def test_sftp_works_through_the_forced_key(
    sshd: Sshd, default_key: Path, functional_scratch: Path, tmp_path: Path
) -> None:
    """sshd runs the forced command for the sftp subsystem (``internal-sftp`` in the test
    sshd's config); hpcgate-forced runs sftp-server as the account."""
    data = os.urandom(200_000)
    (tmp_path / "up").write_bytes(data)
    batch = f"cd {functional_scratch.name}\nput {tmp_path / 'up'} 'a;b $x'\nls -l\n"
    batch += f"get 'a;b $x' {tmp_path / 'down'}\nmkdir made\n"
    done = sftp(sshd, default_key, batch)
    assert done.returncode == 0, done.stderr
    assert "a;b $x" in done.stdout
    landed = functional_scratch / "a;b $x"
    assert landed.read_bytes() == data
    assert pwd.getpwuid(landed.stat().st_uid).pw_name == ACCOUNT
    assert (tmp_path / "down").read_bytes() == data
    assert (functional_scratch / "made").is_dir()


def test_no_sftp_refuses_sftp_and_still_runs_commands(
    sshd: Sshd, no_sftp_key: Path, default_key: Path
) -> None:
    assert sftp(sshd, no_sftp_key, "ls\n").returncode != 0
    # The sftp subsystem alone, with no input: sftp-server ends at once, a refusal is 126
    # (sshd sends no stderr of a subsystem, so the status is all the client sees).
    served = ssh(sshd, default_key, "sftp", options=("-s",))
    assert served.returncode == 0, served.stderr
    refused = ssh(sshd, no_sftp_key, "sftp", options=("-s",))
    assert refused.returncode == 126, refused.stderr
    assert refused.stdout == ""
    ran = ssh(sshd, no_sftp_key, shlex.join(["id", "-un"]))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == ACCOUNT


def test_the_gateway_s_tar_runs_and_names_a_local_archive(
    sshd: Sshd, default_key: Path, functional_scratch: Path
) -> None:
    """compress_argv as the transport sends it; the archive's name has a colon, which
    without --force-local would be a remote host's file."""
    (functional_scratch / "data").mkdir()
    (functional_scratch / "data" / "x").write_text("hello")
    archive = functional_scratch / "host:a.tar.gz"
    argv = compress_argv(str(functional_scratch / "data"), str(archive), "gzip")
    done = ssh(sshd, default_key, command_line(Command(argv, env={}), 60))
    assert done.returncode == 0, done.stderr
    listing = subprocess.run(
        ["tar", "--list", "--force-local", f"--file={archive}"], capture_output=True, text=True
    )
    assert listing.stdout.split() == ["data/", "data/x"]


@pytest.mark.parametrize(
    "hostile",
    [
        ["--checkpoint=1", "--checkpoint-action=exec=touch {mark}"],
        ["--to-command=touch {mark}"],
        ["--use-compress-program=touch {mark}"],
        ["-I", "touch {mark}"],
    ],
)
def test_a_hostile_tar_runs_nothing(
    sshd: Sshd, default_key: Path, functional_scratch: Path, hostile: list[str]
) -> None:
    mark = Path(f"/tmp/forced-tar-{uuid.uuid4().hex[:8]}")
    (functional_scratch / "x").write_text("x")
    options = [word.format(mark=mark) for word in hostile]
    argv = ["tar", "--create", f"--file={functional_scratch / 'x.tar'}", "--force-local", *options]
    argv += ["-C", str(functional_scratch), "--", "x"]
    done = ssh(sshd, default_key, shlex.join(argv))
    assert done.returncode == 126, (done.returncode, done.stdout, done.stderr)
    assert "tar option" in done.stderr and done.stdout == ""
    assert not mark.exists()
    assert not (functional_scratch / "x.tar").exists()
