"""Unix accounts: which account a principal's commands and file accesses run as.

Single-user mode (the gateway is not root): everything runs as the gateway's own account
and :meth:`Accounts.resolve` returns None. Multi-user mode (the gateway runs as root on a
login node): each principal maps to a Unix account, and every scheduler command and file
access made for a request runs as that account with root's privileges dropped. Root and
system accounts (uid below ``min_uid``, and ``nobody``) are never mappable.

Accounts are looked up in the user database of the system they are used on (a
:class:`UserDirectory`, which each transport is): this machine's for a local system, the
login node's (``getent passwd`` over SSH) for a system reached over SSH, so a gateway that
runs off the cluster needs no copy of the cluster's users.
"""

from __future__ import annotations

import functools
import os
import pwd
import time
from dataclasses import dataclass
from typing import Protocol

from hpcgate.config import UsersConfig
from hpcgate.model.errors import Forbidden
from hpcgate.model.principal import Principal

NOBODY = 65534  # the overflow id: above min_uid, and never a person


@dataclass(frozen=True, slots=True)
class Account:
    """A Unix account that commands run as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str


@dataclass(frozen=True, slots=True)
class UserEntry:
    """One user as a system's user database gives it (``groups`` only where known)."""

    name: str
    uid: int
    gid: int
    home: str
    groups: tuple[int, ...] = ()


class UserDirectory(Protocol):
    """A system's user database."""

    async def lookup_user(self, name: str) -> UserEntry | None:
        """The user called ``name``, or None if there is none."""
        ...

    async def own_home(self) -> str:
        """The home directory of the account the gateway itself uses on the system."""
        ...


def local_user(name: str) -> UserEntry | None:
    """The user ``name`` in this machine's database (NSS), with its groups."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    return UserEntry(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, groups)


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
        self._cache: dict[tuple[int, str], tuple[float, Account]] = {}

    async def for_scheduler(
        self, who: Principal, per_user: bool, users: UserDirectory
    ) -> Account | None:
        """The account a scheduler's commands run as for ``who``: only a per-user
        scheduler (Slurm, PBS) runs them as the caller; a single-account one runs as us."""
        return await self.resolve(who, users) if per_user else None

    async def resolve(self, who: Principal, users: UserDirectory) -> Account | None:
        """``who``'s account in ``users`` (None in single-user mode)."""
        if not self.multi:
            return None
        name = self._config.map.get(who.user)
        if name is None and self._config.same_name:
            name = who.user
        if name is None:
            raise Forbidden(f"user {who.user!r} is not mapped to a Unix account")
        return await self._cached(name, who.user, users)

    async def _cached(self, name: str, user: str, users: UserDirectory) -> Account:
        """Lookups read /etc/passwd or NSS, or ask the login node: keep them a minute."""
        now = time.monotonic()
        key = (id(users), name)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        account = self.checked(await users.lookup_user(name), user)
        self._cache[key] = (now + self._cache_seconds, account)
        return account

    def lookup(self, name: str, user: str) -> Account:
        """The account ``name`` on this machine (checked as :meth:`resolve` does)."""
        return self.checked(local_user(name), user)

    def checked(self, entry: UserEntry | None, user: str) -> Account:
        """The account of a user database's entry, unless it is none, root, nobody or a
        system account."""
        if entry is None:
            raise Forbidden(f"user {user!r} maps to no Unix account on this system")
        if entry.uid in (0, NOBODY) or entry.uid < self._config.min_uid:
            raise Forbidden(f"user {user!r} maps to a system account, which is never used")
        return Account(entry.name, entry.uid, entry.gid, entry.groups, entry.home)

    async def home(self, account: Account | None, users: UserDirectory) -> str:
        """The account's home directory (the gateway's own account's in single-user mode,
        on the system ``users`` describes)."""
        return account.home if account is not None else await users.own_home()

    def name(self, account: Account | None) -> str:
        """The account's name (the gateway's own in single-user mode)."""
        return account.name if account is not None else self._own_name

    @functools.cached_property
    def _own_name(self) -> str:
        return pwd.getpwuid(os.getuid()).pw_name
