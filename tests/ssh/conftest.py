"""The SSH tier: a real OpenSSH server (scripts/sshd) on 127.0.0.1 with users alice and bob.

The server is started here if it does not answer (needs root). Its CA key and the users'
test keys are root's, so the tier runs as root. In CI (``CI`` set) a server that cannot
start, or keys that cannot be read, fail the run; elsewhere the tier is skipped.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sshd"


@dataclass(frozen=True)
class Sshd:
    """Where the test sshd listens and its keys, as printed by ``scripts/sshd env``."""

    host: str
    port: int
    host_key: Path  # the server's public host key
    known_hosts: Path  # one line: the server and its host key
    ca: Path  # private key of the user CA that sshd trusts (TrustedUserCAKeys)
    ca_pub: Path
    keys: Path  # keys/alice, keys/bob: key pairs authorized in the users' ~/.ssh
    log: Path  # sshd's own log (LogLevel VERBOSE)
    script: Path

    def key(self, user: str) -> Path:
        """The private half of the user's key in ``~user/.ssh/authorized_keys``."""
        return self.keys / user

    def ssh_argv(self, user: str, identity: Path | None, *options: str) -> list[str]:
        """An OpenSSH client command line, up to the remote command, for ``user``.

        No configuration file, agent or default key is used: only ``identity`` (and its
        ``-cert.pub`` if present), and the host key must match ``known_hosts``.
        """
        argv = ["ssh", "-F", "/dev/null", "-p", str(self.port), "-o", "BatchMode=yes"]
        argv += ["-o", f"UserKnownHostsFile={self.known_hosts}"]
        argv += ["-o", "GlobalKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=yes"]
        argv += ["-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none"]
        argv += ["-o", "ConnectTimeout=5"]
        if identity is not None:
            argv += ["-i", str(identity)]
        return [*argv, *options, "-l", user, self.host]


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, timeout=600)


def answering() -> bool:
    return run_script("status").returncode == 0


def read_env() -> Sshd:
    values: dict[str, str] = {}
    for line in run_script("env").stdout.splitlines():
        _export, assignment = shlex.split(line)
        name, _, value = assignment.partition("=")
        values[name.removeprefix("HPCGATE_TEST_SSH_")] = value
    return Sshd(
        host=values["HOST"],
        port=int(values["PORT"]),
        host_key=Path(values["HOST_KEY"]),
        known_hosts=Path(values["KNOWN_HOSTS"]),
        ca=Path(values["CA"]),
        ca_pub=Path(values["CA_PUB"]),
        keys=Path(values["KEYS"]),
        log=Path(values["LOG"]),
        script=Path(values["SCRIPT"]),
    )


def cannot_run(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the SSH tier must run in CI, but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sshd() -> Sshd:
    """The test sshd of ``scripts/sshd``, started if it does not answer."""
    if not answering():
        if os.geteuid() != 0:
            cannot_run("no test sshd answers and starting one needs root (scripts/sshd up)")
        done = run_script("up")
        if done.returncode != 0 or not answering():
            pytest.fail(f"scripts/sshd up failed:\n{done.stderr[-4000:]}")
    env = read_env()
    if not os.access(env.ca, os.R_OK) or not os.access(env.key("alice"), os.R_OK):
        cannot_run(f"{env.ca} and the users' test keys are readable by root only")
    return env
