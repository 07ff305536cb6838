"""File operations on behalf of a principal, confined to the system's roots.

Every operation resolves the requested path as the caller's account, checks the result
against the caller's roots (and, under a system's ``project_root``, the root of a project
the caller has a role in, whose role must allow the operation), then acts on the resolved
path, as the caller's account. On the
local system the file system is confined to the root the path lies in
(:meth:`~hpcgate.transports.filesystem.FileSystem.beneath`): each operation finds its file
again from the root's descriptor, so a symlink swapped in after the check leads nowhere
outside.
"""

from __future__ import annotations

import contextlib
import posixpath
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio

from hpcgate.files.paths import Roots, clean, inside
from hpcgate.files.streams import receive
from hpcgate.model.errors import BadRequest, Forbidden, HpcgateError
from hpcgate.model.files import Checksum, Content, FileEntry, FileType, Listing, Uploaded
from hpcgate.model.jobs import PROJECT_NAME_PATTERN
from hpcgate.model.principal import Scope
from hpcgate.projects import Projects
from hpcgate.target import Target
from hpcgate.transports.file_rules import content
from hpcgate.transports.filesystem import FileInfo, FileSystem, OpenFile

PROJECT_FIELD = "{project}"
_PROJECT = re.compile(PROJECT_NAME_PATTERN)
MAX_VIEW = 1 << 20
ROOTS_SECONDS = 60.0
UPLOAD_MODE = 0o644  # what cp gives a new file under the usual umask 022


@dataclass(frozen=True, slots=True)
class Place:
    """A checked path on a system, and how to reach it."""

    fs: FileSystem
    roots: Roots
    asked: str
    real: str
    root: str | None  # the root it lies in, where the file system is confined to it


@dataclass(frozen=True, slots=True)
class Opened:
    """A file open for reading (the caller closes it) and what identifies its contents."""

    file: OpenFile
    info: FileInfo


class FileService:
    """The files API's operations, each on a checked :class:`Place`, as the caller's account.
    Making one does no I/O; it keeps the remote roots' real paths for a minute."""

    def __init__(self, projects: Projects | None = None) -> None:
        self._real_roots: dict[tuple[str, str], tuple[str, float]] = {}
        self._projects = projects

    async def roots(self, target: Target) -> Roots:
        """The caller's roots on the target's system, with its home directory."""
        await target.workdir()  # a new caller's own directory (often its root) exists
        return Roots.expand(target.cluster.config.roots, await target.name(), await target.home())

    async def _place(self, target: Target, path: str, follow: bool, scope: Scope) -> Place:
        target.who.require(scope)
        roots = await self.roots(target)
        cleaned = clean(path, roots.home)
        project_root = await self._project_root(target, cleaned, scope)
        if project_root is not None:
            roots = roots.with_root(project_root)
        elif (limit := target.who.restriction) is not None and limit.project is not None:
            raise Forbidden(f"this token is limited to project {limit.project!r}: its root only")
        fs = target.cluster.transport.files(await target.account())
        root = None
        if target.cluster.config.transport == "local":
            root = roots.owner(cleaned, path)
            fs = fs.beneath(root)
        else:
            roots = roots.resolved(await self._resolved(target.system, roots.shown, fs))
        real = await fs.resolve(cleaned, follow)
        roots.check(real, path)
        return Place(fs, roots, path, real, root)

    async def _project_root(self, target: Target, cleaned: str, scope: Scope) -> str | None:
        """The root of the project whose directory ``cleaned`` lies in, if the caller has
        a role there (Forbidden if the role lacks ``scope``); None if it lies in none the
        caller has a role in (it is then checked against the caller's own roots)."""
        template = target.cluster.config.project_root
        if template is None or self._projects is None:
            return None
        prefix = template.removesuffix(PROJECT_FIELD)
        name = cleaned.removeprefix(prefix).partition("/")[0]
        if not cleaned.startswith(prefix) or not _PROJECT.fullmatch(name):
            return None
        if await self._projects.role(target.who, name) is None:
            return None
        await self._projects.require(target.who, name, scope)
        return prefix + name

    async def _resolved(
        self, system: str, shown: tuple[str, ...], fs: FileSystem
    ) -> tuple[str, ...]:
        """The roots' real paths on a remote system, as it resolves them (kept a minute)."""
        real = []
        for root in shown:
            key, now = (system, root), time.monotonic()
            known = self._real_roots.get(key)
            if known is None or known[1] < now:
                found = await fs.resolve(root, follow=True)
                known = self._real_roots[key] = (found, now + ROOTS_SECONDS)
            real.append(known[0])
        return tuple(real)

    async def readable(self, target: Target, path: str, follow: bool = True) -> Place:
        """The checked place of ``path``, for reading (``files:read``)."""
        return await self._place(target, path, follow, Scope.FILES_READ)

    async def writable(self, target: Target, path: str, follow: bool = True) -> Place:
        """The checked place of ``path``, for changing it (``files:write``)."""
        return await self._place(target, path, follow, Scope.FILES_WRITE)

    async def listing(
        self, target: Target, path: str, hidden: bool, depth: int, numeric: bool
    ) -> Listing:
        place = await self.readable(target, path)
        found = await place.fs.listing(place.real, hidden, depth, numeric)
        return Listing(path=place.real, entries=found)

    async def stat(self, target: Target, path: str, dereference: bool, numeric: bool) -> FileEntry:
        place = await self.readable(target, path, follow=dereference)
        return await place.fs.lstat(place.real, numeric)

    async def checksum(self, target: Target, path: str, algorithm: str) -> Checksum:
        place = await self.readable(target, path)
        return await place.fs.checksum(place.real, algorithm)

    async def head(self, target: Target, path: str, lines: int | None, size: int | None) -> Content:
        place = await self.readable(target, path)
        return await place.fs.head(place.real, lines, size)

    async def tail(self, target: Target, path: str, lines: int | None, size: int | None) -> Content:
        place = await self.readable(target, path)
        return await place.fs.tail(place.real, lines, size)

    async def view(self, target: Target, path: str, offset: int, size: int) -> Content:
        if size > MAX_VIEW:
            raise BadRequest(f"view at most {MAX_VIEW} bytes at once; download for more")
        place = await self.readable(target, path)
        return Content(path=place.real, **content(await place.fs.read(place.real, offset, size)))

    async def file_type(self, target: Target, path: str) -> FileType:
        place = await self.readable(target, path, follow=False)
        return await place.fs.file_type(place.real)

    async def mkdir(self, target: Target, path: str, parents: bool) -> FileEntry:
        place = await self.writable(target, path)
        await place.fs.mkdir(place.real, parents)
        return await place.fs.lstat(place.real)

    async def remove(self, target: Target, path: str, recursive: bool) -> None:
        place = await self.writable(target, path, follow=False)
        place.roots.check_not_root(place.real, path)
        await place.fs.remove(place.real, recursive)

    async def chmod(self, target: Target, path: str, mode: str) -> FileEntry:
        place = await self.writable(target, path)
        return await place.fs.chmod(place.real, int(mode, 8))

    async def chown(
        self, target: Target, path: str, owner: str | None, group: str | None
    ) -> FileEntry:
        if owner is None and group is None:
            raise BadRequest("give an owner, a group or both")
        place = await self.writable(target, path)
        return await place.fs.chown(place.real, owner, group)

    async def symlink(self, target: Target, path: str, points_to: str) -> FileEntry:
        place = await self.writable(target, path, follow=False)
        pointed = await self.readable(
            target, posixpath.join(posixpath.dirname(place.real), points_to)
        )
        if place.root is not None and not inside(pointed.real, place.root):
            raise Forbidden(f"{points_to}: a symlink may only point within its own root")
        return await place.fs.symlink(place.real, pointed.real)

    async def open(self, target: Target, path: str) -> Opened:
        """Open a regular file to download; the caller closes ``file``."""
        place = await self.readable(target, path)
        opened = await place.fs.open_read(place.real)
        try:
            return Opened(opened, await opened.info())
        except BaseException:
            await opened.close()
            raise

    async def upload(
        self,
        target: Target,
        path: str,
        body: AsyncIterator[bytes],
        overwrite: bool,
        sha256: str | None,
    ) -> Uploaded:
        """Stream ``body`` into a hidden file beside the target, check it, then give it the
        target's name in one rename: a half-finished upload never appears at ``path``."""
        place = await self.writable(target, path, follow=False)
        temporary = temporary_name(place.real)
        handle = await open_temporary(place.fs, temporary, path)
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
                await place.fs.discard(temporary)
            raise
        return Uploaded(entry=entry, sha256=digest)


def temporary_name(path: str) -> str:
    folder, name = posixpath.split(path)
    return posixpath.join(folder, f".{name[:200]}.hpcgate-upload-{uuid.uuid4().hex[:12]}")


async def open_temporary(fs: FileSystem, temporary: str, shown_as: str) -> OpenFile:
    """Create an upload's hidden file. An error (no such directory, permission denied, ...)
    names the target as the caller wrote it, not the hidden file."""
    try:
        return await fs.open_new(temporary)
    except HpcgateError as exc:
        raise type(exc)(exc.detail.replace(temporary, shown_as), **exc.extra) from None


async def publish(
    fs: FileSystem, temporary: str, target: str, shown_as: str, overwrite: bool
) -> FileEntry:
    """Give a finished upload its name. An error (the target exists, is a directory, ...)
    names the target as the caller wrote it, not the hidden file."""
    try:
        return await fs.publish(temporary, target, overwrite, UPLOAD_MODE)
    except HpcgateError as exc:
        raise type(exc)(exc.detail.replace(temporary, shown_as), **exc.extra) from None


def verify(digest: str, expected: str | None) -> None:
    if expected is not None and expected.lower() != digest:
        raise BadRequest(f"the upload's sha256 is {digest}, not the {expected} announced")
