"""File operations on behalf of a principal, confined to the system's roots.

Every operation resolves the requested path as the caller's account, checks the result
against the caller's roots, then acts on the resolved path, as the caller's account.
"""

from __future__ import annotations

import contextlib
import posixpath
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import anyio

from hpcgate.accounts import Account, Accounts
from hpcgate.cluster import Cluster
from hpcgate.files.paths import Roots, clean
from hpcgate.files.streams import receive
from hpcgate.model.errors import BadRequest, HpcgateError
from hpcgate.model.files import (
    Checksum,
    Content,
    FileEntry,
    FileType,
    Listing,
    Uploaded,
)
from hpcgate.model.principal import Principal, Scope
from hpcgate.systems import Systems
from hpcgate.transports.base import Transport
from hpcgate.transports.files import FileAccess, FileInfo, OpenFile

WRITE_BATCH = 4 << 20
MAX_VIEW = 1 << 20
ROOTS_SECONDS = 60.0
UPLOAD_MODE = 0o644  # what cp gives a new file under the usual umask 022


@dataclass(frozen=True, slots=True)
class Place:
    """A checked path on a system, and how to reach it."""

    fs: FileAccess
    roots: Roots
    asked: str
    real: str


@dataclass(frozen=True, slots=True)
class Opened:
    """A file open for reading (the caller closes it) and what identifies its contents."""

    file: OpenFile
    info: FileInfo


class FileService:
    def __init__(self, systems: Systems, accounts: Accounts) -> None:
        self._systems = systems
        self._accounts = accounts
        self._real_roots: dict[tuple[str, str], tuple[str, float]] = {}

    async def roots(self, who: Principal, system: str) -> Roots:
        cluster = self._systems.get(system)
        return await self._roots(who, cluster, await self._account(who, cluster))

    async def transport_of(self, who: Principal, system: str) -> tuple[Transport, Account | None]:
        """The system's transport and the account the caller's commands run as there."""
        cluster = self._systems.get(system)
        return cluster.transport, await self._account(who, cluster)

    async def _account(self, who: Principal, cluster: Cluster) -> Account | None:
        return await self._accounts.for_scheduler(
            who, cluster.scheduler.per_user, cluster.transport
        )

    async def _roots(self, who: Principal, cluster: Cluster, account: Account | None) -> Roots:
        user = account.name if account is not None else who.user
        home = await self._accounts.home(account, cluster.transport)
        return Roots.expand(cluster.config.roots, user, home)

    async def _place(
        self, who: Principal, system: str, path: str, follow: bool, scope: Scope
    ) -> Place:
        who.require(scope)
        cluster = self._systems.get(system)
        account = await self._account(who, cluster)
        roots = await self._roots(who, cluster, account)
        fs = cluster.transport.files(account)
        if cluster.config.transport != "local":
            roots = roots.resolved(await self._resolved(system, roots.shown, fs))
        wanted = clean(path, roots.home)
        real = (await fs.call("resolve", wanted, follow=follow))["path"]
        roots.check(real, path)
        return Place(fs, roots, path, real)

    async def _resolved(
        self, system: str, shown: tuple[str, ...], fs: FileAccess
    ) -> tuple[str, ...]:
        """The roots' real paths on a remote system, as it resolves them (kept a minute)."""
        real = []
        for root in shown:
            key, now = (system, root), time.monotonic()
            known = self._real_roots.get(key)
            if known is None or known[1] < now:
                found = (await fs.call("resolve", root, follow=True))["path"]
                known = self._real_roots[key] = (found, now + ROOTS_SECONDS)
            real.append(known[0])
        return tuple(real)

    async def readable(self, who: Principal, system: str, path: str, follow: bool = True) -> Place:
        """The checked place of ``path``, for reading (``files:read``)."""
        return await self._place(who, system, path, follow, Scope.FILES_READ)

    async def writable(self, who: Principal, system: str, path: str, follow: bool = True) -> Place:
        """The checked place of ``path``, for changing it (``files:write``)."""
        return await self._place(who, system, path, follow, Scope.FILES_WRITE)

    async def listing(
        self, who: Principal, system: str, path: str, hidden: bool, depth: int, numeric: bool
    ) -> Listing:
        place = await self.readable(who, system, path)
        found = await place.fs.call(
            "listing", place.real, hidden=hidden, depth=depth, numeric=numeric
        )
        return Listing(path=place.real, entries=[FileEntry(**entry) for entry in found])

    async def stat(
        self, who: Principal, system: str, path: str, dereference: bool, numeric: bool
    ) -> FileEntry:
        place = await self.readable(who, system, path, follow=dereference)
        return FileEntry(**await place.fs.call("lstat", place.real, numeric=numeric))

    async def checksum(self, who: Principal, system: str, path: str, algorithm: str) -> Checksum:
        place = await self.readable(who, system, path)
        found = await place.fs.call("checksum", place.real, algorithm=algorithm)
        return Checksum(path=place.real, **found)

    async def head(
        self, who: Principal, system: str, path: str, lines: int | None, size: int | None
    ) -> Content:
        return await self._content(who, system, path, "head", lines=lines, size=size)

    async def tail(
        self, who: Principal, system: str, path: str, lines: int | None, size: int | None
    ) -> Content:
        return await self._content(who, system, path, "tail", lines=lines, size=size)

    async def view(self, who: Principal, system: str, path: str, offset: int, size: int) -> Content:
        if size > MAX_VIEW:
            raise BadRequest(f"view at most {MAX_VIEW} bytes at once; download for more")
        return await self._content(who, system, path, "view", offset=offset, size=size)

    async def _content(
        self, who: Principal, system: str, path: str, op: str, **args: Any
    ) -> Content:
        place = await self.readable(who, system, path)
        return Content(path=place.real, **await place.fs.call(op, place.real, **args))

    async def file_type(self, who: Principal, system: str, path: str) -> FileType:
        place = await self.readable(who, system, path, follow=False)
        return FileType(path=place.real, **await place.fs.call("file_type", place.real))

    async def mkdir(self, who: Principal, system: str, path: str, parents: bool) -> FileEntry:
        place = await self.writable(who, system, path)
        return FileEntry(**await place.fs.call("mkdir", place.real, parents=parents))

    async def remove(self, who: Principal, system: str, path: str, recursive: bool) -> None:
        place = await self.writable(who, system, path, follow=False)
        place.roots.check_not_root(place.real, path)
        await place.fs.call("remove", place.real, recursive=recursive)

    async def chmod(self, who: Principal, system: str, path: str, mode: str) -> FileEntry:
        place = await self.writable(who, system, path)
        return FileEntry(**await place.fs.call("chmod", place.real, mode=mode))

    async def chown(
        self, who: Principal, system: str, path: str, owner: str | None, group: str | None
    ) -> FileEntry:
        if owner is None and group is None:
            raise BadRequest("give an owner, a group or both")
        place = await self.writable(who, system, path)
        return FileEntry(**await place.fs.call("chown", place.real, owner=owner, group=group))

    async def symlink(self, who: Principal, system: str, path: str, target: str) -> FileEntry:
        place = await self.writable(who, system, path, follow=False)
        pointed = await self.readable(
            who, system, posixpath.join(posixpath.dirname(place.real), target)
        )
        return FileEntry(**await place.fs.call("symlink", place.real, target=pointed.real))

    async def open(self, who: Principal, system: str, path: str) -> Opened:
        """Open a regular file to download; the caller closes ``file``."""
        place = await self.readable(who, system, path)
        opened = await place.fs.open("open_read", place.real)
        try:
            return Opened(opened, await opened.info())
        except BaseException:
            await opened.close()
            raise

    async def upload(
        self,
        who: Principal,
        system: str,
        path: str,
        body: AsyncIterator[bytes],
        overwrite: bool,
        sha256: str | None,
    ) -> Uploaded:
        """Stream ``body`` into a hidden file beside the target, check it, then give it the
        target's name in one rename: a half-finished upload never appears at ``path``."""
        place = await self.writable(who, system, path, follow=False)
        temporary = temporary_name(place.real)
        handle = await place.fs.open("open_new", temporary)
        try:
            try:
                digest = await receive(body, handle, path)
            finally:
                with anyio.CancelScope(shield=True):
                    await handle.close()
            verify(digest, sha256)
            entry = await publish(place.fs, temporary, place.real, path, overwrite)
        except BaseException:
            with contextlib.suppress(Exception), anyio.CancelScope(shield=True):
                await place.fs.call("discard", temporary)
            raise
        return Uploaded(entry=FileEntry(**entry), sha256=digest)


def temporary_name(path: str) -> str:
    folder, name = posixpath.split(path)
    return posixpath.join(folder, f".{name[:200]}.hpcgate-upload-{uuid.uuid4().hex[:12]}")


async def publish(
    fs: FileAccess, temporary: str, target: str, shown_as: str, overwrite: bool
) -> dict[str, Any]:
    """Give a finished upload its name. An error (the target exists, is a directory, ...)
    names the target as the caller wrote it, not the hidden file."""
    try:
        entry: dict[str, Any] = await fs.call(
            "publish", temporary, target=target, overwrite=overwrite, mode=UPLOAD_MODE
        )
    except HpcgateError as exc:
        raise type(exc)(exc.detail.replace(temporary, shown_as), **exc.extra) from None
    return entry


def verify(digest: str, expected: str | None) -> None:
    if expected is not None and expected.lower() != digest:
        raise BadRequest(f"the upload's sha256 is {digest}, not the {expected} announced")
