"""Who a child process runs as: the argv prefix that drops to an account, and its
environment, built from scratch so nothing of the gateway's (which may hold secrets)
reaches it."""

from __future__ import annotations

import os

from hpcgate.accounts import Account

_BASE_VARIABLES = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL")


def clean_environment() -> dict[str, str]:
    """The variables every command may see: where programs are and who runs them."""
    return {name: os.environ[name] for name in _BASE_VARIABLES if name in os.environ}


def account_environment(account: Account) -> dict[str, str]:
    """A fresh environment for an account: nothing of root's beyond PATH and locale."""
    base = {n: os.environ[n] for n in ("PATH", "LANG", "LC_ALL", "TZ") if n in os.environ}
    return {**base, "HOME": account.home, "USER": account.name, "LOGNAME": account.name}


def as_account(argv: tuple[str, ...], account: Account | None) -> tuple[str, ...]:
    """The argv, prefixed to drop to ``account``'s uid, gid and groups before it runs.

    util-linux's ``setpriv`` execs the command directly (no shell), with every capability
    gone once the uid is not 0, and no way back up through setuid programs.
    """
    if account is None:
        return argv
    groups = ",".join(str(gid) for gid in account.groups)
    identity = (f"--reuid={account.uid}", f"--regid={account.gid}")
    supplementary = f"--groups={groups}" if groups else "--clear-groups"
    return ("setpriv", *identity, supplementary, "--no-new-privs", "--", *argv)
