"""Unix accounts: which account a principal's commands and file accesses run as.

Single-user mode (the gateway is not root): everything runs as the gateway's own account
and :meth:`Accounts.resolve` returns None. Multi-user mode (the gateway runs as root on a
login node): each principal maps to a Unix account, and every scheduler command and file
access made for a request runs as that account with root's privileges dropped. Root and
system accounts (uid below ``min_uid``, and ``nobody``) are never mappable.
"""

from __future__ import annotations

import functools
import os
import pwd
import time
from dataclasses import dataclass

from hpcgate.config import UsersConfig
from hpcgate.errors import Forbidden
from hpcgate.principal import Principal

NOBODY = 65534  # the overflow id: above min_uid, and never a person


@dataclass(frozen=True, slots=True)
class Account:
    """A Unix account that commands run as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


def multi_user(config: UsersConfig, per_user_systems: bool) -> bool:
    """Whether principals map to their own accounts.

    ``auto`` is multi-user when the gateway runs as root and serves a scheduler that runs
    jobs per user (Slurm, PBS); a root gateway with only the embedded scheduler is a
    single-user sandbox, so the zero-configuration start works anywhere.
    """
    if config.mode == "auto":
        return os.geteuid() == 0 and per_user_systems
    return config.mode == "multi"


class Accounts:
    """Maps principals to accounts; None means "the gateway's own account"."""

    def __init__(self, config: UsersConfig, multi: bool, cache_seconds: float = 60.0) -> None:
        self._config = config
        self.multi = multi
        self._cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, Account]] = {}

    def for_scheduler(self, who: Principal, per_user: bool) -> Account | None:
        """The account a scheduler's commands run as for ``who``: only a per-user
        scheduler (Slurm, PBS) runs them as the caller; a single-account one runs as us."""
        return self.resolve(who) if per_user else None

    def resolve(self, who: Principal) -> Account | None:
        if not self.multi:
            return None
        name = self._config.map.get(who.user)
        if name is None and self._config.same_name:
            name = who.user
        if name is None:
            raise Forbidden(f"user {who.user!r} is not mapped to a Unix account")
        return self._cached(name, who.user)

    def _cached(self, name: str, user: str) -> Account:
        """Account lookups read /etc/passwd and /etc/group (or NSS): keep them a minute."""
        now = time.monotonic()
        hit = self._cache.get(name)
        if hit is not None and hit[0] > now:
            return hit[1]
        account = self.lookup(name, user)
        self._cache[name] = (now + self._cache_seconds, account)
        return account

    def lookup(self, name: str, user: str) -> Account:
        try:
            entry = pwd.getpwnam(name)
        except KeyError:
            raise Forbidden(f"user {user!r} maps to no Unix account on this system") from None
        if entry.pw_uid in (0, NOBODY) or entry.pw_uid < self._config.min_uid:
            raise Forbidden(f"user {user!r} maps to a system account, which is never used")
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
        return Account(entry.pw_name, entry.pw_uid, entry.pw_gid, groups, entry.pw_dir)

    def home(self, account: Account | None) -> str:
        """The account's home directory (the gateway's own in single-user mode)."""
        return account.home if account is not None else os.path.expanduser("~")

    def name(self, account: Account | None) -> str:
        """The account's name (the gateway's own in single-user mode)."""
        return account.name if account is not None else self._own_name

    @functools.cached_property
    def _own_name(self) -> str:
        return pwd.getpwuid(os.getuid()).pw_name
