"""Who is calling, on which system, as which account: worked out once per request.

A route turns its caller and its ``{system}`` into one :class:`Target` and hands that to
the services, so no service looks the system up or maps the caller to an account again.
The account is looked up on first use only (a job's state needs none) and kept for the
rest of the request.
"""

from __future__ import annotations

import contextlib
import os
import posixpath

from hpcgate.accounts import Account, Accounts
from hpcgate.cluster import Cluster
from hpcgate.model.errors import Conflict, NotFound
from hpcgate.model.principal import Principal
from hpcgate.transports.base import Transport
from hpcgate.transports.filesystem import FileSystem

PRIVATE = 0o700  # a directory made for one caller: nobody else's to read


class Target:
    """The caller (:attr:`who`) on one system (:attr:`cluster`)."""

    __slots__ = ("_accounts", "_resolved", "_workdir", "cluster", "who")

    def __init__(self, who: Principal, cluster: Cluster, accounts: Accounts) -> None:
        self.who = who
        self.cluster = cluster
        self._accounts = accounts
        self._resolved: tuple[Account | None] | None = None
        self._workdir: str | None = None

    @property
    def system(self) -> str:
        return self.cluster.name

    def as_owner(self, owner: Principal) -> Target:
        """The same system for another principal: a job's owner, whose account a project
        member's read or cancel of the job runs as (the member's role was checked)."""
        return Target(owner, self.cluster, self._accounts)

    async def account(self) -> Account | None:
        """The Unix account the caller's jobs and file accesses run as on this system
        (None: the gateway's own, in single-user mode or on a system where everyone is one
        functional account)."""
        if self._resolved is None:
            cluster = self.cluster
            per_user = cluster.scheduler.per_user
            found = await self._accounts.for_scheduler(self.who, per_user, cluster.transport)
            self._resolved = (found,)
        return self._resolved[0]

    async def home(self) -> str:
        """The home directory of :meth:`account` on this system."""
        return await self._accounts.home(await self.account(), self.cluster.transport)

    async def name(self) -> str:
        """What ``{user}`` stands for in the system's roots and workdir: the caller's Unix
        account (multi-user mode), else (and for the shared fallback account) its hpcgate
        name, so each user still has roots of its own."""
        account = await self.account()
        return account.name if account is not None and not account.shared else self.who.user

    async def workdir(self) -> str:
        """The caller's default working directory on this system. On this machine (local
        transport) it is made on first use, mode 0700, as the caller's account, so a
        new user's jobs and files have their directory from the first request."""
        if self._workdir is None:
            template = str(self.cluster.config.workdir)
            path = template.format(user=await self.name(), home=await self.home())
            if self.cluster.config.transport == "local":
                await _ensure_private(self.cluster.transport, await self.account(), path)
            self._workdir = path
        return self._workdir


async def _ensure_private(transport: Transport, account: Account | None, path: str) -> None:
    """Make ``path`` (mode 0700) if it is missing: as the account, or, where the account
    may not create it (a root gateway's own ``work`` directory), by the gateway for it."""
    fs = transport.files(account)
    try:
        await fs.lstat(path)
        return
    except NotFound:
        pass
    own = transport.files()
    plain = path == posixpath.normpath(path)  # no '..' that leads elsewhere than it reads
    if account is not None and plain and await _gateways_own(own, posixpath.dirname(path)):
        # Another request of the account's may make it meanwhile (the controller starts
        # services side by side): only the gateway makes entries here, so ours either way.
        with contextlib.suppress(Conflict):
            await own.mkdir(path, parents=False)
        await own.chown(path, str(account.uid), str(account.gid))
        await own.chmod(path, PRIVATE)
        return
    await fs.mkdir(path, parents=True)
    await fs.chmod(path, PRIVATE)


async def _gateways_own(fs: FileSystem, directory: str) -> bool:
    """Whether ``directory`` is the gateway's and no one else can write in it: a directory
    made there for an account cannot have been prepared (or swapped) by anyone else."""
    try:
        entry = await fs.lstat(directory)
    except NotFound:
        return False
    closed = not int(entry.mode, 8) & 0o022
    return entry.type == "directory" and entry.uid == os.geteuid() and closed
