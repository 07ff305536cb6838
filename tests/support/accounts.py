"""Real Unix accounts for tests of a root gateway or engine (created if missing), and a
directory outside pytest's private temporary tree that such accounts can reach."""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root runs jobs as other accounts")


@dataclass(frozen=True)
class UnixAccount:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]

    def run_as(self) -> dict[str, object]:
        """As the embedded engine's ``run_as`` takes it."""
        return {"name": self.name, "uid": self.uid, "gid": self.gid, "groups": list(self.groups)}


def unix_account(name: str) -> UnixAccount:
    """The account ``name``, made with ``useradd`` if this machine has none of that name."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/bash", name], check=True)
        entry = pwd.getpwnam(name)
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return UnixAccount(entry.pw_name, entry.pw_uid, entry.pw_gid, groups)


@contextmanager
def reachable_directory() -> Iterator[Path]:
    """A new directory under /tmp, mode 0711: other accounts may pass through it (pytest's
    own temporary directories are 0700, closed to them). Removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="hpcgate-accounts-", dir="/tmp"))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def passable(path: Path) -> None:
    """Let other accounts pass through every directory above ``path`` (pytest makes its
    temporary directories 0700): a root gateway's users must reach their directories."""
    for parent in path.parents:
        mode = parent.stat().st_mode
        if not mode & stat.S_IXOTH:
            parent.chmod(stat.S_IMODE(mode) | 0o011)


def own_directory(parent: Path, account: UnixAccount) -> Path:
    """``parent/NAME``, the account's own (mode 0700)."""
    path = parent / account.name
    path.mkdir(mode=0o700)
    os.chown(path, account.uid, account.gid)
    return path


def give(path: Path, name: str) -> None:
    """Make ``path`` (a tree) the account ``name``'s when the tests run as root: a root
    gateway acts on a user's files as the user's own account."""
    if os.geteuid() != 0:
        return
    account = unix_account(name)
    for found in [path, *path.rglob("*")]:
        os.lchown(found, account.uid, account.gid)
