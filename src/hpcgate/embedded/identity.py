"""Whose account a job runs as (``run_as``), and acting as it for a moment.

A root engine (the gateway runs as root, in multi-user mode) runs each job as the Unix
account of the user who submitted it, like slurmd does: the job document names the account
(``{"name", "uid", "gid", "groups"}``) and the supervisor, which stays root to signal and
record, starts the script with that uid, gid and groups. Whatever the engine touches on the
job's behalf (a ``script_path``, the working directory, the output files) it touches with
the account's effective ids (:func:`acting_as`), so the kernel checks the account's
permissions, never root's. An engine that is not root runs jobs as itself: ``run_as`` may
then only name its own account.
"""

from __future__ import annotations

import os
import pwd
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from hpcgate.embedded.errors import UserError

ID_MAX = 2**32 - 2  # (uid_t)-1 means "unchanged" to the kernel
MAX_GROUPS = 65536  # the kernel's NGROUPS_MAX


@dataclass(frozen=True)
class RunAs:
    """The account a job runs as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def document(self) -> dict[str, Any]:
        """As stored in the job document."""
        return {"name": self.name, "uid": self.uid, "gid": self.gid, "groups": list(self.groups)}


def parse_run_as(value: Any) -> RunAs | None:
    """The ``run_as`` of a job document (None: the engine's own account); UserError if bad."""
    if value is None:
        return None
    if not isinstance(value, dict) or set(value) != {"name", "uid", "gid", "groups"}:
        raise UserError("run_as must be an object with name, uid, gid and groups")
    name, groups = value["name"], value["groups"]
    if not isinstance(name, str) or not name or "\0" in name:
        raise UserError("run_as.name must be an account name")
    if not isinstance(groups, list) or len(groups) > MAX_GROUPS:
        raise UserError("run_as.groups must be a list of group ids")
    run_as = RunAs(name, _id(value["uid"]), _id(value["gid"]), tuple(map(_id, groups)))
    _check_allowed(run_as)
    return run_as


def _id(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= ID_MAX:
        raise UserError(f"run_as ids are whole numbers from 0 to {ID_MAX}")
    return value


def _check_allowed(run_as: RunAs) -> None:
    if run_as.uid == 0:
        raise UserError("run_as never names root: jobs do not run as root")
    own = os.geteuid()
    if own != 0 and run_as.uid != own:
        raise UserError("only an engine that runs as root runs jobs as another account")


def as_account(run_as: RunAs | None) -> dict[str, Any]:
    """The :class:`subprocess.Popen` arguments that start a process as ``run_as``."""
    if run_as is None or os.geteuid() != 0:
        return {}
    return {"user": run_as.uid, "group": run_as.gid, "extra_groups": list(run_as.groups)}


def identity_variables(run_as: RunAs) -> dict[str, str]:
    """USER, LOGNAME and HOME of the account (its home from this machine's user database;
    ``/`` if it has none there)."""
    try:
        home = pwd.getpwuid(run_as.uid).pw_dir
    except KeyError:
        home = "/"
    return {"USER": run_as.name, "LOGNAME": run_as.name, "HOME": home}


@contextmanager
def acting_as(run_as: RunAs | None) -> Iterator[None]:
    """Take ``run_as``'s effective ids (and groups) for the block, root's back after it.

    Only for a root engine, which is single-threaded: the ids are the process's own.
    """
    if run_as is None or os.geteuid() != 0:
        yield
        return
    groups, gid = os.getgroups(), os.getegid()
    os.setgroups(list(run_as.groups))
    os.setegid(run_as.gid)
    os.seteuid(run_as.uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(gid)
        os.setgroups(groups)
