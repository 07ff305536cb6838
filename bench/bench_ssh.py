"""The SSH side of ``bench.py --transport ssh``: the raw baseline and sshd's own count.

* :class:`RawSsh`: OpenSSH's ``ssh`` as alice, with her test key from ``scripts/sshd``, the
  host key checked against its known_hosts, over one reused connection (ControlMaster,
  ControlPersist, a ControlPath in a temporary directory): what a user scripting
  ``ssh alice@login sbatch ...`` against a warm connection pays; and ``scp`` over that
  same connection (:meth:`RawSsh.copy`), what a user moves files with instead of the
  gateway (OpenSSH's defaults: no cipher or other option chosen, SFTP underneath).
* :func:`gateway_sessions`: the sessions sshd started on the gateway's own connections
  (its certificates carry the key id ``hpcgate:<system>:<account>``), read from sshd's log
  (LogLevel VERBOSE), so other clients of the same sshd are not counted.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from tests.support.sshd import Sshd

ACCEPTED = re.compile(r"^Accepted \S+ for \S+ from \S+ port (\d+) (.*)$")
SESSION = re.compile(r"^Starting session: (\S+) .*? from \S+ port (\d+) ")


class RawSsh:
    """``ssh -l USER host COMMAND`` over one master connection kept open in ``control_dir``."""

    def __init__(self, sshd: Sshd, user: str, control_dir: Path) -> None:
        control = ["-o", f"ControlPath={control_dir}/{user}.sock"]
        master = [*control, "-o", "ControlMaster=auto", "-o", "ControlPersist=600"]
        self._argv = sshd.ssh_argv(user, sshd.key(user), *master)
        self._scp = scp_argv(sshd, user, *master)
        self._remote = f"{user}@{sshd.host}:"
        self._exit = sshd.ssh_argv(user, None, *control, "-O", "exit")
        self._check = sshd.ssh_argv(user, None, *control, "-O", "check")

    def start(self) -> None:
        """Open the master connection (it stays in the background) and check it answers."""
        self.run(["true"])
        subprocess.run(self._check, check=True, capture_output=True, timeout=10)

    def run(self, argv: Sequence[str], stdin: bytes | None = None) -> bytes:
        """Run ``argv`` on the host (quoted for its login shell); its stdout."""
        return self.run_line(shlex.join(argv), stdin)

    def run_line(self, line: str, stdin: bytes | None = None) -> bytes:
        done = subprocess.run(
            [*self._argv, line],
            input=stdin if stdin is not None else b"",
            check=True,
            capture_output=True,
            timeout=60,
        )
        return done.stdout

    def copy(self, local: Path, remote: str, upload: bool, timeout: float = 600) -> None:
        """``scp`` of ``local`` to the host's ``remote`` path (``upload``), or back."""
        there = self._remote + remote
        ends = [str(local), there] if upload else [there, str(local)]
        subprocess.run([*self._scp, *ends], check=True, capture_output=True, timeout=timeout)

    def close(self) -> None:
        subprocess.run(self._exit, check=False, capture_output=True, timeout=10)


def scp_argv(sshd: Sshd, user: str, *options: str) -> list[str]:
    """OpenSSH's ``scp`` up to its two paths, with the same options as
    :meth:`Sshd.ssh_argv` (no configuration file, the user's key only, the host key
    checked) and nothing that changes how it moves bytes."""
    ssh = sshd.ssh_argv(user, sshd.key(user), *options)
    port = ssh.index("-p")
    return ["scp", "-q", *ssh[1:port], "-P", *ssh[port + 1 : -3]]


def log_size(sshd: Sshd) -> int:
    return sshd.log.stat().st_size


def gateway_sessions(sshd: Sshd, key_id_prefix: str, since: int, counted_from: int) -> int:
    """Sessions (commands, SFTP) sshd started on connections whose certificate key id starts
    with ``key_id_prefix``, logged at or after byte ``counted_from`` of its log. Logins are
    read from byte ``since`` (before the gateway started), so a connection opened earlier
    is known by its port; a port reused by another client is re-assigned at its login."""
    ours: dict[str, bool] = {}
    count = 0
    with sshd.log.open("rb") as log:
        log.seek(since)
        position = since
        for raw in log:
            line = raw.decode(errors="replace")
            if match := ACCEPTED.match(line):
                ours[match.group(1)] = f" ID {key_id_prefix}" in match.group(2)
            elif (match := SESSION.match(line)) and position >= counted_from:
                count += ours.get(match.group(2), False)
            position += len(raw)
    return count
