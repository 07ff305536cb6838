"""The SSH transport's :class:`~.filesystem.FileSystem`: SFTP requests on the caller's
pooled connection (:mod:`.ssh_sftp`), so the host's sshd checks the account's own
permissions and nothing is parsed from ``ls``.

SFTP version 3, what OpenSSH speaks, carries less than a local ``stat`` and names fewer
errors than ``errno``. Where it says only "failure" the cause is read back from the host:
a name that exists (409), a directory with entries (409), a filesystem with no room left
(507, from ``statvfs@openssh.com``). It has no change time (``changed`` is null), no inode
(ETags come from size and modification time) and no time below the second. A few things it
cannot do at all run as commands, argv only, as the same account:

- checksums: ``sha256sum`` and its siblings, so a file is hashed where it lies instead of
  crossing the network;
- user and group names of a listing, and the ids of a chown's names: ``getent``
  (:mod:`.ssh_names`);
- the bytes under a directory (task progress): ``du -s -b -P``.

Publishing an upload without overwriting uses ``hardlink@openssh.com`` (refused when the
name exists), as the local helpers use ``link``; with overwriting ``posix-rename@openssh.com``.
"""

from __future__ import annotations

import contextlib
import errno
import posixpath
import stat
from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

import asyncssh

from hpcgate.accounts import Account
from hpcgate.model.commands import Command, CommandResult
from hpcgate.model.errors import BadRequest, Conflict, NotFound, TransportError
from hpcgate.model.files import Checksum, Content, FileEntry, FileType
from hpcgate.transports import file_rules
from hpcgate.transports.file_rules import ALGORITHMS, MAX_LIST, content
from hpcgate.transports.filesystem import OpenFile
from hpcgate.transports.os_errors import errno_error
from hpcgate.transports.ssh_errors import C_LOCALE, failure
from hpcgate.transports.ssh_names import Names
from hpcgate.transports.ssh_pool import ConnectionPool
from hpcgate.transports.ssh_sftp import FILE_TIMEOUT, Bulk, Sftp, SftpFile, on_sftp, read_bytes

T = TypeVar("T")

CHECKSUM_TIMEOUT = 600.0  # a checksum of a very large file, on the host
HEAD_STEP = 65536
_PROGRAMS = {
    "md5": "md5sum",
    "sha1": "sha1sum",
    "sha256": "sha256sum",
    "sha512": "sha512sum",
    "blake2b": "b2sum",  # BLAKE2b-512, hashlib.blake2b's default
}
Found = tuple[str, asyncssh.SFTPAttrs, str | None]  # a path, its lstat, a link's target


class Host(Protocol):
    """What the SSH transport lends its file systems."""

    pool: ConnectionPool
    where: str
    bulk: Bulk | None  # long transfers' SFTP over OpenSSH's client, if it is used

    def login(self, account: Account | None) -> str: ...

    async def run(
        self, command: Command, timeout: float, account: Account | None = None
    ) -> CommandResult: ...


class SftpFileSystem:
    """The files of an SSH host as ``account`` (or the gateway's own login) sees them."""

    def __init__(self, host: Host, account: Account | None, names: Names) -> None:
        self._host = host
        self._account = account
        self._login = host.login(account)
        self._names = names

    async def _do(
        self, path: str, operation: Callable[[Sftp], Awaitable[T]], retry: bool = True
    ) -> T:
        return await on_sftp(self._host.pool, self._host.where, self._login, path, operation, retry)

    async def _command(self, argv: tuple[str, ...], timeout: float, path: str) -> bytes:
        """What a file command prints; its failure as the error it means."""
        result = await self._host.run(Command(argv, env=C_LOCALE), timeout, self._account)
        if not result.ok:
            raise failure(result, argv[0], path)
        return result.stdout

    def beneath(self, root: str) -> SftpFileSystem:
        """Itself: SFTP names files by path only, and the server resolves each again. The
        operations run as the caller's own account through sshd, so a race there reaches
        nothing that account could not reach anyway."""
        return self

    # ----------------------------------------------------------------- names and details

    async def resolve(self, path: str, follow: bool) -> str:
        parent, name = posixpath.split(path)
        if follow or not name:
            return await self._real(path)
        return posixpath.join(await self._real(parent), name)

    async def _real(self, path: str) -> str:
        """Every symlink in ``path`` resolved; names that do not exist yet kept as they are
        (the host's realpath allows only the last one to be missing)."""
        try:
            return str(await self._do(path, lambda sftp: sftp.realpath(path)))
        except NotFound:
            parent, name = posixpath.split(path)
            if not name or parent == path:
                raise
            return posixpath.join(await self._real(parent), name)

    async def lstat(self, path: str, numeric: bool = False) -> FileEntry:
        async def described(sftp: Sftp) -> Found:
            attrs = await sftp.lstat(path)
            return path, attrs, await _link_target(sftp, path, attrs)

        return (await self._entries([await self._do(path, described)], numeric))[0]

    async def listing(self, path: str, hidden: bool, depth: int, numeric: bool) -> list[FileEntry]:
        async def walk(sftp: Sftp) -> list[Found]:
            if not stat.S_ISDIR((await sftp.stat(path)).permissions or 0):
                raise Conflict(f"Not a directory: {path}")
            found: list[Found] = []
            await _walk(sftp, path, hidden, depth, found)
            return found

        return await self._entries(await self._do(path, walk), numeric)

    async def _entries(self, found: list[Found], numeric: bool) -> list[FileEntry]:
        users: dict[int, str | None] = {}
        groups: dict[int, str | None] = {}
        if not numeric and found:
            host, account = self._host, self._account
            users = await self._names.of(host, account, "passwd", {a.uid or 0 for _, a, _ in found})
            groups = await self._names.of(host, account, "group", {a.gid or 0 for _, a, _ in found})
        return [_entry(path, attrs, target, users, groups) for path, attrs, target in found]

    async def size(self, path: str) -> int | None:
        try:
            return (await self._do(path, lambda sftp: sftp.stat(path))).size or 0
        except NotFound:
            return None

    async def usage(self, path: str) -> int:
        printed = await self._command(("du", "-s", "-b", "-P", "--", path), FILE_TIMEOUT, path)
        counted = printed.split(maxsplit=1)[0] if printed.strip() else b""
        if not counted.isdigit():
            raise TransportError(f"du printed no size for {path}: {printed[:80]!r}")
        return int(counted)

    # ----------------------------------------------------------------- contents

    async def read(self, path: str, offset: int, size: int) -> bytes:
        async def part(sftp: Sftp) -> bytes:
            await _regular(sftp, path)
            async with sftp.open(path, "rb", encoding=None) as handle:
                return await read_bytes(handle, size, offset)

        return await self._do(path, part)

    async def head(self, path: str, lines: int | None, size: int | None) -> Content:
        async def first(sftp: Sftp) -> bytes:
            await _regular(sftp, path)
            async with sftp.open(path, "rb", encoding=None) as handle:
                if size is not None:
                    return await read_bytes(handle, size, 0)
                return await _first_lines(handle, lines or 10)

        return Content(path=path, **content(await self._do(path, first)))

    async def tail(self, path: str, lines: int | None, size: int | None) -> Content:
        async def last(sftp: Sftp) -> bytes:
            await _regular(sftp, path)
            async with sftp.open(path, "rb", encoding=None) as handle:
                end = (await handle.stat()).size or 0
                if size is not None:
                    return await read_bytes(handle, size, max(0, end - size))
                return await _last_lines(handle, end, lines or 10)

        return Content(path=path, **content(await self._do(path, last)))

    async def checksum(self, path: str, algorithm: str) -> Checksum:
        program = _PROGRAMS.get(algorithm)
        if program is None:
            raise BadRequest(f"unknown algorithm {algorithm}; known: {', '.join(ALGORITHMS)}")
        await self._do(path, lambda sftp: _regular(sftp, path))
        printed = await self._command((program, "-b", "--", path), CHECKSUM_TIMEOUT, path)
        digest = printed.split(maxsplit=1)[0].lstrip(b"\\").decode()  # \ marks escapes
        return Checksum(path=path, algorithm=algorithm, checksum=digest)

    async def file_type(self, path: str) -> FileType:
        async def sniffed(sftp: Sftp) -> FileType:
            mode = (await sftp.lstat(path)).permissions or 0
            if not stat.S_ISREG(mode):
                return FileType(path=path, type=file_rules.kind(mode))
            async with sftp.open(path, "rb", encoding=None) as handle:
                start = await read_bytes(handle, file_rules.SNIFF_BYTES, 0)
            return FileType(path=path, type="file", mime_type=file_rules.sniff(start))

        return await self._do(path, sniffed)

    async def open_read(self, path: str) -> OpenFile:
        return await self._open(path, "rb")

    async def open_new(self, path: str) -> OpenFile:
        return await self._open(path, "xb")

    async def open_append(self, path: str) -> OpenFile:
        return await self._open(path, "r+b")

    async def _open(self, path: str, mode: str) -> OpenFile:
        host = self._host
        return await SftpFile.open(host.pool, host.where, self._login, path, mode, host.bulk)

    # ----------------------------------------------------------------- changes

    async def mkdir(self, path: str, parents: bool) -> None:
        async def make(sftp: Sftp) -> None:
            if not parents:
                return await _create(sftp, path, sftp.mkdir(path))
            try:
                await sftp.makedirs(path, exist_ok=True)
            except asyncssh.SFTPFailure:  # a name on the way is no directory
                raise Conflict(f"Not a directory: {path}") from None

        await self._do(path, make, retry=parents)

    async def remove(self, path: str, recursive: bool) -> None:
        async def remove(sftp: Sftp) -> None:
            if not stat.S_ISDIR((await sftp.lstat(path)).permissions or 0):
                await sftp.remove(path)
            elif recursive:
                await sftp.rmtree(path)
            else:
                try:
                    await sftp.rmdir(path)
                except asyncssh.SFTPFailure:
                    if await sftp.listdir(path):
                        raise Conflict(f"Directory not empty: {path}") from None
                    raise

        await self._do(path, remove, retry=False)

    async def chmod(self, path: str, mode: int) -> FileEntry:
        await self._do(path, lambda sftp: sftp.chmod(path, mode))
        return await self.lstat(path)

    async def chown(self, path: str, owner: str | None, group: str | None) -> FileEntry:
        host, account = self._host, self._account
        uid = None if owner is None else await self._names.number(host, account, "passwd", owner)
        gid = None if group is None else await self._names.number(host, account, "group", group)

        async def change(sftp: Sftp) -> None:
            now = await sftp.stat(path)  # SFTP sets both ids at once
            new_uid = now.uid or 0 if uid is None else uid
            await sftp.chown(path, new_uid, now.gid or 0 if gid is None else gid)

        await self._do(path, change)
        return await self.lstat(path)

    async def symlink(self, path: str, target: str) -> FileEntry:
        async def link(sftp: Sftp) -> None:
            await _create(sftp, path, sftp.symlink(target, path))

        await self._do(path, link, retry=False)
        return await self.lstat(path)

    async def publish(self, path: str, target: str, overwrite: bool, mode: int) -> FileEntry:
        async def publish(sftp: Sftp) -> None:
            await sftp.chmod(path, mode)
            try:
                if overwrite:
                    await sftp.posix_rename(path, target)
                else:
                    await sftp.link(path, target)  # refused if the name exists
                    await sftp.remove(path)
            except asyncssh.SFTPFailure:
                if await _exists(sftp, target):
                    kind = "Is a directory" if await _is_directory(sftp, target) else "File exists"
                    raise Conflict(f"{kind}: {target}") from None
                raise

        await self._do(path, publish, retry=False)
        return await self.lstat(target)

    async def discard(self, path: str) -> None:
        with contextlib.suppress(NotFound):
            await self._do(path, lambda sftp: sftp.remove(path))


async def _first_lines(handle: asyncssh.SFTPClientFile, count: int) -> bytes:
    """The first ``count`` lines, read a step at a time (at most TAIL_LIMIT bytes)."""
    data = b""
    while len(data) <= file_rules.TAIL_LIMIT:
        more = await read_bytes(handle, HEAD_STEP, len(data))
        data += more
        wanted = file_rules.leading_lines(data, count)
        if wanted is not None or not more:
            return data if wanted is None else wanted
    return data


async def _last_lines(handle: asyncssh.SFTPClientFile, end: int, count: int) -> bytes:
    """The last ``count`` lines, read backwards from ``end`` a step at a time."""
    data, start = b"", end
    while start > 0 and not file_rules.has_lines(data, count):
        step = min(file_rules.TAIL_STEP, start)
        start -= step
        data = await read_bytes(handle, step, start) + data
    return file_rules.last_lines(data, count)


async def _walk(sftp: Sftp, path: str, hidden: bool, depth: int, found: list[Found]) -> None:
    """Entries under ``path`` in name order, ``depth`` levels deep; links never entered."""
    names = sorted(await sftp.readdir(path), key=lambda name: str(name.filename))
    for name in names:
        child = str(name.filename)
        if child in (".", "..") or (not hidden and child.startswith(".")):
            continue
        full = posixpath.join(path, child)
        found.append((full, name.attrs, await _link_target(sftp, full, name.attrs)))
        if len(found) >= MAX_LIST:
            detail = f"more than {MAX_LIST} entries; list a smaller tree"
            raise errno_error(errno.EFBIG, detail, path)
        if depth > 1 and stat.S_ISDIR(name.attrs.permissions or 0):
            await _walk(sftp, full, hidden, depth - 1, found)


async def _link_target(sftp: Sftp, path: str, attrs: asyncssh.SFTPAttrs) -> str | None:
    if not stat.S_ISLNK(attrs.permissions or 0):
        return None
    return str(await sftp.readlink(path))


async def _create(sftp: Sftp, path: str, request: Awaitable[None]) -> None:
    """``request``, which makes ``path``: SFTP v3's bare failure when the name is taken
    becomes the 409 it is."""
    try:
        await request
    except asyncssh.SFTPFailure:
        if await _exists(sftp, path):
            raise Conflict(f"File exists: {path}") from None
        raise


async def _exists(sftp: Sftp, path: str) -> bool:
    try:
        await sftp.lstat(path)
    except asyncssh.SFTPNoSuchFile:
        return False
    return True


async def _is_directory(sftp: Sftp, path: str) -> bool:
    return stat.S_ISDIR((await sftp.lstat(path)).permissions or 0)


def _entry(
    path: str,
    attrs: asyncssh.SFTPAttrs,
    target: str | None,
    users: dict[int, str | None],
    groups: dict[int, str | None],
) -> FileEntry:
    """A file's entry from its SFTP attributes (no change time: SFTP v3 has none)."""
    uid, gid = attrs.uid or 0, attrs.gid or 0
    return FileEntry(
        **file_rules.entry(
            path,
            attrs.permissions or 0,
            attrs.size or 0,
            (uid, gid),
            (users.get(uid), groups.get(gid)),
            (float(attrs.mtime or 0), float(attrs.atime or 0), None),
            target,
        )
    )


async def _regular(sftp: Sftp, path: str) -> None:
    """Refuse to read what is no regular file (a FIFO or a device could block the server's
    reader). SFTP cannot open a file and then ask what it is, so this looks first."""
    refused = file_rules.irregular((await sftp.stat(path)).permissions or 0)
    if refused is not None:
        raise errno_error(*refused, path)
