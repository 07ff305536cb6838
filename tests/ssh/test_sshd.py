"""The test sshd itself, driven by the real OpenSSH client: who gets in and who does not.

Refusals are checked twice: the client fails, and sshd's log names the reason, so a test
cannot pass because of some other failure (a typo in a path, a missing key).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.support.sshd import Sshd

LogSince = Callable[[], str]
DENIED = "Permission denied (publickey)."  # the methods listed are all the server offers


def ssh(
    sshd: Sshd, user: str, identity: Path | None, *options: str, command: str = "id -un"
) -> subprocess.CompletedProcess[str]:
    argv = [*sshd.ssh_argv(user, identity, *options), command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30)


def new_key(directory: Path, name: str = "id") -> Path:
    key = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return key


def certify(ca: Path, key: Path, principal: str, validity: str = "+5m") -> Path:
    """Sign ``key.pub`` with ``ca``; ssh picks up ``key-cert.pub`` next to ``-i key``."""
    argv = ["ssh-keygen", "-q", "-s", str(ca), "-I", "test", "-n", principal, "-V", validity]
    subprocess.run(
        [*argv, f"{key}.pub"],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return key


@pytest.fixture
def log_since(sshd: Sshd) -> LogSince:
    """What sshd logged since the test started."""
    start = sshd.log.stat().st_size

    def read() -> str:
        with sshd.log.open(errors="replace") as f:
            f.seek(start)
            return f.read()

    return read


@pytest.mark.parametrize("user", ["alice", "bob"])
def test_a_user_logs_in_with_the_key_in_authorized_keys(sshd: Sshd, user: str) -> None:
    done = ssh(sshd, user, sshd.key(user))
    assert (done.returncode, done.stdout) == (0, f"{user}\n"), done.stderr


def test_a_users_key_does_not_open_another_account(sshd: Sshd) -> None:
    done = ssh(sshd, "bob", sshd.key("alice"))
    assert done.returncode == 255 and DENIED in done.stderr, done.stderr


def test_a_certificate_from_the_ca_logs_in_as_its_principal(sshd: Sshd, tmp_path: Path) -> None:
    key = certify(sshd.ca, new_key(tmp_path), "alice")
    done = ssh(sshd, "alice", key)
    assert (done.returncode, done.stdout) == (0, "alice\n"), done.stderr


def test_a_certificate_does_not_log_in_as_another_user(
    sshd: Sshd, tmp_path: Path, log_since: LogSince
) -> None:
    key = certify(sshd.ca, new_key(tmp_path), "alice")
    done = ssh(sshd, "bob", key)
    assert done.returncode == 255 and DENIED in done.stderr, done.stderr
    assert "Certificate invalid: name is not a listed principal" in log_since()


def test_an_expired_certificate_is_refused(sshd: Sshd, tmp_path: Path, log_since: LogSince) -> None:
    key = certify(sshd.ca, new_key(tmp_path), "alice", validity="20200101:20200102")
    done = ssh(sshd, "alice", key)
    assert done.returncode == 255 and DENIED in done.stderr, done.stderr
    assert "Certificate invalid: expired" in log_since()


def test_a_certificate_from_another_ca_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    other_ca = new_key(tmp_path, "other-ca")
    key = certify(other_ca, new_key(tmp_path), "alice")
    done = ssh(sshd, "alice", key)
    assert done.returncode == 255 and DENIED in done.stderr, done.stderr


def test_passwords_are_not_offered(sshd: Sshd) -> None:
    done = ssh(
        sshd,
        "alice",
        None,
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
    )
    assert done.returncode == 255 and DENIED in done.stderr, done.stderr


def test_root_cannot_log_in_even_with_a_valid_certificate(
    sshd: Sshd, tmp_path: Path, log_since: LogSince
) -> None:
    key = certify(sshd.ca, new_key(tmp_path), "root")
    done = ssh(sshd, "root", key)
    assert done.returncode == 255 and DENIED in done.stderr, done.stderr
    assert "ROOT LOGIN REFUSED" in log_since()


@pytest.mark.parametrize("known", ["another key", "nothing"])
def test_the_client_refuses_a_host_key_it_does_not_know(
    sshd: Sshd, tmp_path: Path, known: str
) -> None:
    known_hosts = tmp_path / "known_hosts"
    other = new_key(tmp_path, "not-the-host-key").with_suffix(".pub").read_text().split()
    lines = f"[{sshd.host}]:{sshd.port} {other[0]} {other[1]}\n" if known == "another key" else ""
    known_hosts.write_text(lines)
    bad = Sshd(**{**vars(sshd), "known_hosts": known_hosts})
    done = ssh(bad, "alice", sshd.key("alice"))
    assert done.returncode == 255, done.stderr
    assert "Host key verification failed." in done.stderr
    assert done.stdout == ""


def test_port_forwarding_is_refused(sshd: Sshd) -> None:
    forward = ["-o", "ExitOnForwardFailure=yes", "-R", f"0:{sshd.host}:9"]
    done = ssh(sshd, "alice", sshd.key("alice"), *forward)
    assert done.returncode == 255
    assert "remote port forwarding failed" in done.stderr


def test_sftp_serves_the_users_home(sshd: Sshd) -> None:
    argv = ["sftp", "-F", "/dev/null", "-b", "-", "-P", str(sshd.port), "-i", str(sshd.key("bob"))]
    argv += ["-o", f"UserKnownHostsFile={sshd.known_hosts}", "-o", "StrictHostKeyChecking=yes"]
    argv += ["-o", "GlobalKnownHostsFile=/dev/null", "-o", "IdentitiesOnly=yes"]
    argv += ["-o", "IdentityAgent=none", f"bob@{sshd.host}"]
    done = subprocess.run(argv, input="pwd\n", capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "Remote working directory: /home/bob" in done.stdout
