"""The gateway's data directory (``home``) when it serves several Unix accounts.

A root gateway in multi-user mode runs each user's jobs and file operations as the user's
own account, and by default each user's directory is ``home/work/USER``. So the accounts
must be able to pass through ``home`` and ``home/work`` (mode 0711: enter, not list), while
everything else in ``home`` (the database with every token's hash, the spools with every
job's script, the admin token) stays the gateway's alone: root's files at the top of
``home`` lose every group and other permission, and the spools stay 0700.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

PASSABLE = 0o711  # others may enter, never list
WORK = "work"


def open_home(home: Path) -> None:
    """Make ``home`` passable for other accounts, with ``home/work`` ready for their own
    directories and nothing else of it readable by them."""
    home.chmod(PASSABLE)
    work = home / WORK
    work.mkdir(mode=PASSABLE, exist_ok=True)
    work.chmod(PASSABLE)  # mkdir's mode is filtered by the umask
    seal_files(home)


def seal_files(home: Path) -> None:
    """Remove group and other permissions from the regular files at the top of ``home``
    (the database and its journal, the admin token, the revocation and lock files)."""
    for entry in os.scandir(home):
        found = entry.stat(follow_symlinks=False)
        if stat.S_ISREG(found.st_mode) and stat.S_IMODE(found.st_mode) & 0o077:
            os.chmod(entry.path, stat.S_IMODE(found.st_mode) & 0o700, follow_symlinks=False)


def closed_ancestors(home: Path) -> list[Path]:
    """The directories above ``home`` that other accounts cannot pass through: while
    there is one, no account reaches its directory under ``home/work``."""
    return [parent for parent in home.parents if not parent.stat().st_mode & stat.S_IXOTH]
