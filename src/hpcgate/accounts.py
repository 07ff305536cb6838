"""Unix accounts: which account a principal's commands and file accesses run as.

Single-user mode (the gateway is not root): everything runs as the gateway's own account
and :meth:`Accounts.resolve` returns None. Multi-user mode (the gateway runs as root on a
login node): each principal maps to a Unix account, and every scheduler command, job and
file access made for a request runs as that account with root's privileges dropped (the
embedded scheduler's commands run as the gateway, which hands it the account to start the
job as). Root and system accounts (uid below ``min_uid``, and ``nobody``) are never
mappable; a principal with no account is refused, or runs as ``[users] fallback``.

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
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Protocol

from hpcgate.model.errors import Forbidden
from hpcgate.model.principal import Principal

if TYPE_CHECKING:  # a type only: the outbound agent carries this module, not the settings
    from hpcgate.config import UsersConfig

NOBODY = 65534  # the overflow id: above min_uid, and never a person


@dataclass(frozen=True, slots=True)
class Account:
    """A Unix account that commands run as."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    #: The ``[users] fallback`` account, shared by the users with no account of their own.
    shared: bool = False


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
    jobs per user (Slurm, PBS, and the embedded scheduler, which a root gateway hands each
    caller's account), so no user's job ever runs as root; else single-user.
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
        self._cache: dict[tuple[int, str], tuple[float, UserEntry]] = {}

    async def for_scheduler(
        self, who: Principal, per_user: bool, users: UserDirectory
    ) -> Account | None:
        """The account ``who``'s jobs and files run as on a system: only a per-user
        scheduler (Slurm, PBS, embedded) runs jobs as the caller; a single-account one runs
        them as us."""
        return await self.resolve(who, users) if per_user else None

    async def resolve(self, who: Principal, users: UserDirectory) -> Account | None:
        """``who``'s account in ``users`` (None in single-user mode): the one its provider's
        mapping rule named, else its mapped account, else the ``fallback`` account if one is
        configured, else Forbidden."""
        if not self.multi:
            return None
        name = who.account or self._config.map.get(who.user)
        if name is None and self._config.same_name:
            name = who.user
        entry = None if name is None else await self._entry(name, users)
        if entry is not None:
            return self.checked(entry, who.user)
        fallback = self._config.fallback
        if fallback is None:
            raise Forbidden(_unmapped(who.user, name))
        return replace(self.checked(await self._entry(fallback, users), who.user), shared=True)

    async def _entry(self, name: str, users: UserDirectory) -> UserEntry | None:
        """Lookups read /etc/passwd or NSS, or ask the login node: keep those found a
        minute (an account made meanwhile is seen at once)."""
        now = time.monotonic()
        key = (id(users), name)
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        entry = await users.lookup_user(name)
        if entry is not None:
            self._cache[key] = (now + self._cache_seconds, entry)
        return entry

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

    def describe(self) -> str:
        """Whose account users' jobs and file operations run as, in one sentence."""
        if not self.multi:
            return (
                f"single-user mode: every user's jobs and file operations run as this"
                f" gateway's own account {self._own_name!r} (uid {os.getuid()})"
            )
        fallback = self._config.fallback
        others = (
            f"run as the shared fallback account {fallback!r}"
            if fallback is not None
            else "are refused (403)"
        )
        return (
            "multi-user mode: each user's jobs and file operations run as the user's own Unix"
            f" account, never as root; users with no account {others}"
        )

    def name(self, account: Account | None) -> str:
        """The account's name (the gateway's own in single-user mode)."""
        return account.name if account is not None else self._own_name

    @functools.cached_property
    def _own_name(self) -> str:
        return pwd.getpwuid(os.getuid()).pw_name


def _unmapped(user: str, name: str | None) -> str:
    """Why ``user`` has no account: jobs and files of a multi-user gateway run as the
    caller's own account, never as root."""
    if name is None:
        return f"user {user!r} is not mapped to a Unix account"
    return (
        f"user {user!r} maps to no Unix account on this system (no account {name!r}): this"
        " gateway runs each user's jobs and file operations as the user's own account, never"
        " as root; an administrator can create the account, map the user to one ([users]"
        " map) or name a shared fallback account ([users] fallback)"
    )
