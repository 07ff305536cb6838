"""The test sshd of ``scripts/sshd``: where it listens, its keys, and the script that runs it.

``scripts/sshd env`` prints the settings of an instance (the shared one, or one of a test's
own with ``instance_env``); ``read_env`` reads them into an ``Sshd``, whose ``table`` is the
gateway config that reaches it. The SSH tier's fixtures and ``python -m bench.bench --transport
ssh`` both start from here.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

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
    instance: Mapping[str, str] = field(default_factory=dict)  # see instance_env

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``scripts/sshd ARGS`` for this instance (``restart``, ``status``...)."""
        return run_script(*args, instance=self.instance)

    def key(self, user: str) -> Path:
        """The private half of the user's key in ``~user/.ssh/authorized_keys``."""
        return self.keys / user

    def table(self, system: str, identity: str = "ca", user: str = "bob", **more: object) -> str:
        """The ``[systems.SYSTEM.ssh]`` table of a gateway config that reaches this sshd:
        certificates from its CA (``ca``), the users' own keys (``keys``), or, for
        ``forced``, a ``key=`` given in ``more``; other settings from ``more`` too."""
        logins = {"ca": {"ca_key": str(self.ca)}, "keys": {"keys_dir": str(self.keys)}}
        settings = {
            "host": self.host,
            "port": self.port,
            "known_hosts": str(self.known_hosts),
            "identity": identity,
            **logins.get(identity, {}),
            "user": user,
            **more,
        }
        lines = [f"{name} = {json.dumps(value)}" for name, value in settings.items()]
        return "\n".join([f"[systems.{system}.ssh]", *lines, ""])

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


def instance_env(state_dir: Path, port: int) -> dict[str, str]:
    """The variables that make scripts/sshd run an instance of its own, not the shared one."""
    return {"HPCGATE_SSHD_DIR": str(state_dir), "HPCGATE_SSHD_PORT": str(port)}


def run_script(
    *args: str, instance: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(instance or {})}
    argv = [str(SCRIPT), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)


def answering() -> bool:
    return run_script("status").returncode == 0


def read_env(instance: Mapping[str, str] | None = None) -> Sshd:
    values: dict[str, str] = {}
    for line in run_script("env", instance=instance).stdout.splitlines():
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
        instance=dict(instance or {}),
    )
