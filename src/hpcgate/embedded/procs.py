"""Process helpers shared by the supervisor and the engine: clean environments, checked kills."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Mapping

# The only variables of the engine's own environment that reach a job: the gateway that
# calls the engine may hold secrets in its environment.
_PASSED = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "TZ", "TMPDIR", "SHELL"})


def base_environment(source: Mapping[str, str]) -> dict[str, str]:
    """The harmless part of ``source``: PATH, HOME, USER, LOGNAME, LANG, LC_*, TZ, TMPDIR, SHELL."""
    clean = {k: v for k, v in source.items() if k in _PASSED or k.startswith("LC_")}
    clean.setdefault("PATH", os.defpath)
    return clean


def start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None if unknown.

    A pid plus its start time names one process for good: pids are reused, start times of
    different processes with the same pid differ. Only Linux (/proc) offers this.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            stat = stream.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ')'.
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[19]) if len(fields) > 19 else None


def kill_group_if_same(pid: int | None, ticks: int | None, signum: int) -> bool:
    """Signal the process group led by ``pid`` if that pid is still the same process.

    Used on the process group of a job whose supervisor died: after a reboot the pid may
    belong to anybody, so without a matching start time nothing is signalled.
    """
    if pid is None or ticks is None or start_ticks(pid) != ticks:
        return False
    try:
        os.killpg(pid, signum)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def signal_process(pid: int, signum: int = signal.SIGTERM) -> bool:
    """Send ``signum`` to ``pid``; False if there is no such process."""
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        return False
    return True


def seal_inherited_fds() -> None:
    """Make every descriptor above stderr close-on-exec.

    A caller may leak descriptors to us (uvloop does, including the write ends of the pipes
    it reads our output from). A detached supervisor that inherited one would keep the
    caller waiting for end-of-file until the job finished.
    """
    try:
        names = os.listdir("/proc/self/fd")
    except OSError:
        names = [str(fd) for fd in range(3, 1024)]
    for name in names:
        fd = int(name)
        if fd > 2:
            # the descriptor listdir itself used is closed by now: nothing to seal there
            with contextlib.suppress(OSError):
                os.set_inheritable(fd, False)
