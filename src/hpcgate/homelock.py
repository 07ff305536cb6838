"""The lock that makes a data directory (``home``) one gateway's.

A gateway takes an exclusive ``flock`` on ``home/gateway.lock`` before it touches anything
else and holds it for the life of its process, with its PID written in the file. A second
gateway on the same home is refused at once, naming the first one's PID, so it can never
fail the first one's running tasks as "left over" on its way to a failed bind. The kernel
releases the lock when the holder dies however it dies (kill -9 included), so a crash never
leaves a stale lock behind. The administrative commands (``hpcgate token ...``) open the
database without the lock: they work while the gateway runs.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "gateway.lock"


class HomeInUse(Exception):
    """Another live process holds the home's lock."""

    def __init__(self, home: Path, pid: int | None) -> None:
        holder = f"PID {pid}" if pid is not None else "another process"
        super().__init__(
            f"{home} is in use by another hpcgate gateway ({holder}): stop it, or give this"
            " one a home of its own (HPCGATE_HOME)"
        )
        self.pid = pid


class HomeLock:
    """The home's lock, once :meth:`acquire` took it (released when the process ends)."""

    def __init__(self, home: Path) -> None:
        self.path = home / LOCK_NAME
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock (once per process), or raise :class:`HomeInUse` at once."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Close-on-exec, like every fd Python opens: no child process inherits the lock.
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise HomeInUse(self.path.parent, pid) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Give the lock up (a process that ends releases it anyway)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None
