"""The agent's hold on its ``state_dir``: one agent process per state directory.

Two agents on one ``state_dir`` would share one agent id (the gateway would take each for
the other reconnecting and cut it) and one result spool (each would offer, and drop, the
other's kept results). So the agent takes an exclusive ``flock`` on ``state_dir/lock``
before anything else and keeps it for its life; the kernel drops it when the process
ends, however it ends (a ``kill -9`` leaves no stale lock). A second agent finds it taken
and refuses to start, naming the holder's pid.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path

log = logging.getLogger("hpcgate.agent")


class StateBusy(Exception):
    """Another agent process holds the state directory; the message says which."""


def hold(state_dir: Path) -> int | None:
    """The descriptor holding ``state_dir``'s lock (keep it open); StateBusy if another
    agent holds it; None (a warning logged) if the directory cannot be used at all, as the
    agent then keeps its id and results in memory only."""
    path = state_dir / "lock"
    try:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        log.warning("cannot lock %s (%s): nothing keeps a second agent off it", path, exc)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise StateBusy(
            f"state_dir {state_dir} is in use by another hpcgate-agent{holder}: two agents"
            " on one state_dir would share one agent id and one result spool; give each"
            " agent its own state_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


def _holder(fd: int) -> str:
    with contextlib.suppress(OSError, ValueError):
        return f" (pid {int(os.pread(fd, 32, 0).decode('ascii').strip())})"
    return ""
