"""The test sshd of ``scripts/sshd``: where it listens, its keys, and the script that runs it.

``scripts/sshd env`` prints the settings of an instance (the shared one, or one of a test's
own with ``instance_env``); ``read_env`` reads them into an ``Sshd``, whose ``table`` is the
gateway config that reaches it. The SSH tier's fixtures and ``python -m bench.bench --transport
ssh`` both start from here. A test that restarts sshd runs one of its own (``own_sshd``).

``FunctionalAccount`` is ``hpcgate-svc``, whose every key runs hpcgate-forced and nothing else.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import hpcgate.forced
from tests.support.gateway_process import free_port

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "sshd"
FUNCTIONAL = "hpcgate-svc"
FORCED = Path(hpcgate.forced.__file__)


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


def cannot_run(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"the SSH tier must run in CI, but {reason}")
    pytest.skip(reason)


@contextlib.contextmanager
def own_sshd(state_dir: Path, forwarding: bool = False) -> Iterator[Sshd]:
    """An sshd of the caller's own, on a free port with its state (keys, CA, log) in
    ``state_dir``, for a test that restarts it or, with ``forwarding``, lets clients open
    connections onward (``AllowTcpForwarding local``); stopped and purged at the end."""
    if os.geteuid() != 0:
        cannot_run("starting an sshd of its own needs root")
    instance = instance_env(state_dir, free_port())
    if forwarding:
        instance["HPCGATE_SSHD_TCP_FORWARDING"] = "local"
    try:
        done = run_script("up", instance=instance)
        if done.returncode != 0:
            pytest.fail(f"scripts/sshd up failed:\n{done.stderr[-4000:]}")
        yield read_env(instance)
    finally:
        run_script("down", "--purge", instance=instance)


@dataclass
class FunctionalAccount:
    """The account ``name``, whose every key runs hpcgate-forced and nothing else."""

    name: str
    home: Path
    keys: Path  # a directory of root's for the private halves
    made: dict[tuple[str, ...], Path] = field(default_factory=dict)

    @property
    def authorized_keys(self) -> Path:
        return self.home / ".ssh" / "authorized_keys"

    def key(self, *allowed: str) -> Path:
        """A key pair whose public half is authorized with ``restrict`` and the forced command
        ``python3 -I forced.py --allow A --allow B...`` (none: its default programs)."""
        if allowed in self.made:
            return self.made[allowed]
        key = self.keys / f"key{len(self.made)}"
        argv = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)]
        subprocess.run(argv, check=True, stdin=subprocess.DEVNULL)
        # The entry point is one file of standard-library code, run by the system's Python, as
        # a site would install it on a cluster (the gateway's venv may not be readable there).
        entry = ["/usr/bin/python3", "-I", str(FORCED)]
        for program in allowed:
            entry += ["--allow", program]
        line = f'restrict,command="{shlex.join(entry)}" {key.with_suffix(".pub").read_text()}'
        with self.authorized_keys.open("a") as authorized:
            authorized.write(line if line.endswith("\n") else line + "\n")
        self.made[allowed] = key
        return key
