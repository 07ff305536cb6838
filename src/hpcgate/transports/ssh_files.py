"""The files API over SSH: each operation of :mod:`hpcgate.files.ops` as SFTP requests on
the caller's pooled connection, so the host's sshd checks the account's own permissions and
nothing is parsed from ``ls``.

SFTP version 3, what OpenSSH speaks, carries less than a local ``stat`` and names fewer
errors than ``errno``. Where it says only "failure" the cause is read back from the host:
a name that exists (409), a directory with entries (409), a filesystem with no room left
(507, from ``statvfs@openssh.com``). It has no change time (``changed`` is null), no inode
(ETags come from size and modification time) and no time below the second. A few things it
cannot do at all run as commands, argv only, as the same account:

- checksums: ``sha256sum`` and its siblings, so a file is hashed where it lies instead of
  crossing the network;
- user and group names of a listing: one ``getent passwd|group ID...`` per batch of new
  ids, remembered for :data:`NAMES_SECONDS`;
- the bytes under a directory (task progress): ``du -s -b -P``.

Publishing an upload without overwriting uses ``hardlink@openssh.com`` (refused when the
name exists), as the local helpers use ``link``; with overwriting ``posix-rename@openssh.com``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import posixpath
import re
import stat
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar, cast

import asyncssh

from hpcgate.accounts import Account, UserEntry
from hpcgate.files import ops
from hpcgate.model.commands import Command, CommandResult
from hpcgate.model.errors import (
    BadRequest,
    CommandTimeout,
    Conflict,
    Forbidden,
    HpcgateError,
    InsufficientStorage,
    NotFound,
    TransportError,
)
from hpcgate.transports.files import FileInfo, OpenFile, translate
from hpcgate.transports.ssh_commands import C_LOCALE, failure
from hpcgate.transports.ssh_pool import ConnectionPool
from hpcgate.transports.ssh_pool import translate as connection_error

T = TypeVar("T")
Sftp = asyncssh.SFTPClient

FILE_TIMEOUT = 120.0  # one SFTP request or file command (a read is at most 1 MiB)
CHECKSUM_TIMEOUT = 600.0  # a checksum of a very large file, on the host
NAMES_SECONDS = 300.0
HEAD_STEP = 65536
ACCOUNT_NAME = re.compile(r"^[A-Za-z0-9_.][A-Za-z0-9_.@$-]{0,255}$")  # what useradd and IdPs allow

SFTP_ERRORS: dict[type[asyncssh.SFTPError], type[HpcgateError]] = {
    asyncssh.SFTPNoSuchFile: NotFound,
    asyncssh.SFTPNoSuchPath: NotFound,
    asyncssh.SFTPPermissionDenied: Forbidden,
    asyncssh.SFTPWriteProtect: Forbidden,
    asyncssh.SFTPFileAlreadyExists: Conflict,
    asyncssh.SFTPNotADirectory: Conflict,
    asyncssh.SFTPFileIsADirectory: Conflict,
    asyncssh.SFTPDirNotEmpty: Conflict,
    asyncssh.SFTPNoSpaceOnFilesystem: InsufficientStorage,
    asyncssh.SFTPQuotaExceeded: InsufficientStorage,
    asyncssh.SFTPInvalidFilename: BadRequest,
    asyncssh.SFTPLinkLoop: BadRequest,
}
# Errors that mean the connection (not the file) failed: read-only requests are retried.
CONNECTION_ERRORS = (
    asyncssh.SFTPConnectionLost,
    asyncssh.SFTPNoConnection,
    asyncssh.DisconnectError,
    asyncssh.ChannelOpenError,
    ConnectionError,
    BrokenPipeError,
)
_PROGRAMS = {
    "md5": "md5sum",
    "sha1": "sha1sum",
    "sha256": "sha256sum",
    "sha512": "sha512sum",
    "blake2b": "b2sum",  # BLAKE2b-512, hashlib.blake2b's default
}


def sftp_error(exc: asyncssh.SFTPError, path: str) -> HpcgateError:
    """The hpcgate error for an SFTP status about ``path`` (not a connection failure)."""
    kind = SFTP_ERRORS.get(type(exc), TransportError)
    reason = exc.reason or type(exc).__name__
    return kind(f"{reason}: {path}" if path else reason)


class Host(Protocol):
    """What the SSH transport lends its file access."""

    pool: ConnectionPool
    where: str

    def login(self, account: Account | None) -> str: ...

    async def on_sftp(
        self,
        account: Account | None,
        path: str,
        operation: Callable[[Sftp], Awaitable[T]],
        retry: bool = True,
    ) -> T: ...

    async def run(
        self, command: Command, timeout: float, account: Account | None = None
    ) -> CommandResult: ...


class Names:
    """User and group names by id, as the host's ``getent`` gives them, for a while."""

    def __init__(self) -> None:
        self._known: dict[tuple[str, int], tuple[str | None, float]] = {}

    async def of(
        self, host: Host, account: Account | None, database: str, ids: set[int]
    ) -> dict[int, str | None]:
        now = time.monotonic()
        missing = sorted(i for i in ids if self._known.get((database, i), (None, 0.0))[1] < now)
        if missing:
            found = await _getent(host, account, database, [str(i) for i in missing])
            for number in missing:
                self._known[(database, number)] = (found.get(number), now + NAMES_SECONDS)
        return {number: self._known[(database, number)][0] for number in ids}

    async def number(self, host: Host, account: Account | None, database: str, name: str) -> int:
        """The id of a user or group name (digits are taken as the id itself)."""
        if name.isdigit():
            return int(name)
        found = await _getent(host, account, database, [_checked(name)])
        if not found:
            raise BadRequest(f"no such {'user' if database == 'passwd' else 'group'}: {name}")
        return next(iter(found))

    async def user(self, host: Host, name: str) -> UserEntry | None:
        """The passwd entry of ``name`` on the host, asked in the gateway's own login."""
        command = Command(("getent", "passwd", _checked(name)), env=C_LOCALE)
        result = await host.run(command, FILE_TIMEOUT, None)
        if result.returncode == 2:  # no such key
            return None
        if not result.ok:
            raise failure(result, "getent", "passwd")
        return _user_entry(result.stdout.decode(errors="replace"), name)


def _checked(name: str) -> str:
    """A user or group name that no program takes for an option."""
    if not ACCOUNT_NAME.match(name):
        raise BadRequest(f"not a user or group name: {name!r}")
    return name


def _user_entry(text: str, name: str) -> UserEntry | None:
    """The entry of ``name`` in ``getent passwd`` output (name:x:uid:gid:gecos:home:shell)."""
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) == 7 and fields[0] == name and fields[2].isdigit() and fields[3].isdigit():
            return UserEntry(name, int(fields[2]), int(fields[3]), fields[5])
    return None


async def _getent(
    host: Host, account: Account | None, database: str, keys: list[str]
) -> dict[int, str]:
    """Ids to names of the entries ``getent`` finds (exit status 2: some were not found).
    No key starts with ``-`` (names are checked first), so none is taken for an option:
    ``getent -s SERVICE`` loads a library of the caller's choosing."""
    command = Command(("getent", database, *keys), env=C_LOCALE)
    result = await host.run(command, FILE_TIMEOUT, account)
    if result.returncode not in (0, 2):
        raise failure(result, "getent", database)
    found: dict[int, str] = {}
    for line in result.stdout.decode(errors="replace").splitlines():
        fields = line.split(":")
        if len(fields) > 2 and fields[2].isdigit():
            found[int(fields[2])] = fields[0]
    return found


class SftpFiles:
    """File access as ``account`` (or the gateway's own login) on an SSH host."""

    def __init__(self, host: Host, account: Account | None, names: Names) -> None:
        self._host = host
        self._account = account
        self._names = names

    async def call(self, op: str, path: str, **args: Any) -> Any:
        if op not in _OPERATIONS:
            raise BadRequest(f"unknown file operation {op!r}")
        return await getattr(self, op)(path, **args)

    async def open(self, opener: str, path: str) -> OpenFile:
        if opener not in _MODES:
            raise BadRequest(f"unknown way to open a file: {opener!r}")
        return await SftpFile.open(self._host, self._account, path, opener)

    async def _do(
        self, path: str, operation: Callable[[Sftp], Awaitable[T]], retry: bool = True
    ) -> T:
        return await self._host.on_sftp(self._account, path, operation, retry)

    # ------------------------------------------------------------ the operations

    async def resolve(self, path: str, follow: bool) -> dict[str, Any]:
        parent, name = posixpath.split(path)
        if follow or not name:
            return {"path": await self._real(path)}
        return {"path": posixpath.join(await self._real(parent), name)}

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

    async def lstat(self, path: str, numeric: bool = False) -> dict[str, Any]:
        async def described(sftp: Sftp) -> tuple[asyncssh.SFTPAttrs, str | None]:
            attrs = await sftp.lstat(path)
            return attrs, await _link_target(sftp, path, attrs)

        attrs, target = await self._do(path, described)
        return (await self._entries([(path, attrs, target)], numeric))[0]

    async def listing(
        self, path: str, hidden: bool, depth: int, numeric: bool
    ) -> list[dict[str, Any]]:
        async def walk(sftp: Sftp) -> list[Found]:
            if not stat.S_ISDIR((await sftp.stat(path)).permissions or 0):
                raise Conflict(f"Not a directory: {path}")
            found: list[Found] = []
            await _walk(sftp, path, hidden, depth, found)
            return found

        return await self._entries(await self._do(path, walk), numeric)

    async def _entries(self, found: list[Found], numeric: bool) -> list[dict[str, Any]]:
        users: dict[int, str | None] = {}
        groups: dict[int, str | None] = {}
        if not numeric and found:
            host, account = self._host, self._account
            users = await self._names.of(host, account, "passwd", {a.uid or 0 for _, a, _ in found})
            groups = await self._names.of(host, account, "group", {a.gid or 0 for _, a, _ in found})
        return [_entry(path, attrs, target, users, groups) for path, attrs, target in found]

    async def mkdir(self, path: str, parents: bool) -> dict[str, Any]:
        async def make(sftp: Sftp) -> None:
            if not parents:
                return await _create(sftp, path, sftp.mkdir(path))
            try:
                await sftp.makedirs(path, exist_ok=True)
            except asyncssh.SFTPFailure:  # a name on the way is no directory
                raise Conflict(f"Not a directory: {path}") from None

        await self._do(path, make, retry=parents)
        return await self.lstat(path)

    async def remove(self, path: str, recursive: bool) -> dict[str, Any]:
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
        return {"path": path}

    async def chmod(self, path: str, mode: str) -> dict[str, Any]:
        await self._do(path, lambda sftp: sftp.chmod(path, int(mode, 8)))
        return await self.lstat(path)

    async def chown(self, path: str, owner: str | None, group: str | None) -> dict[str, Any]:
        host, account = self._host, self._account
        uid = None if owner is None else await self._names.number(host, account, "passwd", owner)
        gid = None if group is None else await self._names.number(host, account, "group", group)

        async def change(sftp: Sftp) -> None:
            now = await sftp.stat(path)  # SFTP sets both ids at once
            new_uid = now.uid or 0 if uid is None else uid
            await sftp.chown(path, new_uid, now.gid or 0 if gid is None else gid)

        await self._do(path, change)
        return await self.lstat(path)

    async def symlink(self, path: str, target: str) -> dict[str, Any]:
        async def link(sftp: Sftp) -> None:
            await _create(sftp, path, sftp.symlink(target, path))

        await self._do(path, link, retry=False)
        return await self.lstat(path)

    async def checksum(self, path: str, algorithm: str) -> dict[str, Any]:
        program = _PROGRAMS.get(algorithm)
        if program is None:
            raise BadRequest(f"unknown algorithm {algorithm}; known: {', '.join(ops.ALGORITHMS)}")
        command = Command((program, "-b", "--", path), env=C_LOCALE)
        result = await self._host.run(command, CHECKSUM_TIMEOUT, self._account)
        if not result.ok:
            raise failure(result, program, path)
        digest = result.stdout.split(maxsplit=1)[0].lstrip(b"\\").decode()  # \ marks escapes
        return {"algorithm": algorithm, "checksum": digest}

    async def head(self, path: str, lines: int | None, size: int | None) -> dict[str, Any]:
        async def first(sftp: Sftp) -> bytes:
            async with sftp.open(path, "rb", encoding=None) as handle:
                if size is not None:
                    return await _read(handle, size, 0)
                data = b""
                while len(data) <= ops.TAIL_LIMIT:
                    more = await _read(handle, HEAD_STEP, len(data))
                    data += more
                    wanted = ops.leading_lines(data, lines or 10)
                    if wanted is not None or not more:
                        return data if wanted is None else wanted
                return data

        return ops.content(await self._do(path, first))

    async def tail(self, path: str, lines: int | None, size: int | None) -> dict[str, Any]:
        async def last(sftp: Sftp) -> bytes:
            async with sftp.open(path, "rb", encoding=None) as handle:
                end = (await handle.stat()).size or 0
                if size is not None:
                    return await _read(handle, size, max(0, end - size))
                data, start = b"", end
                while start > 0 and not ops.has_lines(data, lines or 10):
                    step = min(ops.TAIL_STEP, start)
                    start -= step
                    data = await _read(handle, step, start) + data
                return ops.last_lines(data, lines or 10)

        return ops.content(await self._do(path, last))

    async def view(self, path: str, offset: int, size: int) -> dict[str, Any]:
        async def part(sftp: Sftp) -> bytes:
            async with sftp.open(path, "rb", encoding=None) as handle:
                return await _read(handle, size, offset)

        return ops.content(await self._do(path, part))

    async def file_type(self, path: str) -> dict[str, Any]:
        async def sniffed(sftp: Sftp) -> dict[str, Any]:
            mode = (await sftp.lstat(path)).permissions or 0
            if not stat.S_ISREG(mode):
                return {"type": ops.kind(mode), "mime_type": None}
            async with sftp.open(path, "rb", encoding=None) as handle:
                start = await _read(handle, ops.SNIFF_BYTES, 0)
            return {"type": "file", "mime_type": ops.sniff(start)}

        return await self._do(path, sniffed)

    async def usage(self, path: str) -> dict[str, Any]:
        command = Command(("du", "-s", "-b", "-P", "--", path), env=C_LOCALE)
        result = await self._host.run(command, FILE_TIMEOUT, self._account)
        if not result.ok:
            raise failure(result, "du", path)
        counted = result.stdout.split(maxsplit=1)[0]
        if not counted.isdigit():
            raise TransportError(f"du printed no size for {path}: {result.stdout[:80]!r}")
        return {"bytes": int(counted), "files": None}

    async def publish(self, path: str, target: str, overwrite: bool, mode: int) -> dict[str, Any]:
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

    async def discard(self, path: str) -> dict[str, Any]:
        with contextlib.suppress(NotFound):
            await self._do(path, lambda sftp: sftp.remove(path))
        return {"path": path}

    async def size_of(self, path: str) -> dict[str, Any]:
        return {"size": (await self._do(path, lambda sftp: sftp.lstat(path))).size or 0}


_OPERATIONS = frozenset(
    {
        "resolve", "lstat", "listing", "mkdir", "remove", "chmod", "chown", "symlink",
        "checksum", "head", "tail", "view", "file_type", "usage", "publish", "discard",
        "size_of",
    }
)  # fmt: skip
_MODES = {"open_read": "rb", "open_new": "xb", "open_append": "r+b"}

Found = tuple[str, asyncssh.SFTPAttrs, str | None]  # a path, its lstat, a link's target


async def _walk(sftp: Sftp, path: str, hidden: bool, depth: int, found: list[Found]) -> None:
    """Entries under ``path`` in name order, ``depth`` levels deep; links never entered."""
    names = sorted(await sftp.readdir(path), key=lambda name: str(name.filename))
    for name in names:
        child = str(name.filename)
        if child in (".", "..") or (not hidden and child.startswith(".")):
            continue
        full = posixpath.join(path, child)
        found.append((full, name.attrs, await _link_target(sftp, full, name.attrs)))
        if len(found) >= ops.MAX_LIST:
            detail = f"more than {ops.MAX_LIST} entries; list a smaller tree"
            raise translate(errno.EFBIG, detail, path)
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
) -> dict[str, Any]:
    """What :func:`hpcgate.files.ops.entry` tells of a file, from its SFTP attributes."""
    mode, uid, gid = attrs.permissions or 0, attrs.uid or 0, attrs.gid or 0
    return {
        "name": ops.shown(posixpath.basename(path) or path),
        "path": ops.shown(path),
        "type": ops.kind(mode),
        "size": attrs.size or 0,
        "mode": f"{stat.S_IMODE(mode):04o}",
        "permissions": stat.filemode(mode),
        "uid": uid,
        "gid": gid,
        "user": users.get(uid),
        "group": groups.get(gid),
        "modified": float(attrs.mtime or 0),
        "accessed": float(attrs.atime or 0),
        "changed": None,  # SFTP v3 has no change time
        "link_target": None if target is None else ops.shown(target),
    }


class SftpFile:
    """A file open over SFTP. It keeps its connection leased (so the pool does not close it
    as idle) until it is closed."""

    def __init__(
        self, handle: asyncssh.SFTPClientFile, sftp: Sftp, hold: contextlib.AsyncExitStack,
        path: str, end: int, where: str,
    ) -> None:  # fmt: skip
        self._handle = handle
        self._sftp = sftp
        self._hold = hold
        self._path = path
        self._end = end
        self._where = where

    @classmethod
    async def open(cls, host: Host, account: Account | None, path: str, opener: str) -> SftpFile:
        hold = contextlib.AsyncExitStack()
        login = host.login(account)
        try:
            lease = await hold.enter_async_context(host.pool.lease(login, channel=False))
            sftp = await lease.sftp()
            async with asyncio.timeout(FILE_TIMEOUT):
                handle, end = await _opened(sftp, path, opener)
        except BaseException as exc:
            await hold.aclose()
            if isinstance(exc, asyncssh.SFTPError) and not isinstance(exc, CONNECTION_ERRORS):
                raise sftp_error(exc, path) from exc
            if isinstance(exc, asyncssh.Error | OSError):
                raise connection_error(exc, host.where, login) from exc
            raise
        return cls(handle, sftp, hold, path, end, host.where)

    async def info(self) -> FileInfo:
        attrs = await self._guarded(self._handle.stat())
        return FileInfo(attrs.size or 0, (attrs.mtime or 0) * 1_000_000_000, 0)

    async def read(self, offset: int, size: int) -> bytes:
        """Nothing past the size the file had when opened: a read of a known length is one
        request (or a few), not a chunk's worth of parallel ones past the end."""
        wanted = min(size, self._end - offset)
        if wanted <= 0:
            return b""
        return await self._guarded(_read(self._handle, wanted, offset))

    async def write(self, data: bytes) -> None:
        try:
            await self._guarded(self._handle.write(data, self._end))
        except TransportError:
            if await self._full(len(data)):
                raise InsufficientStorage(os.strerror(errno.ENOSPC)) from None
            raise
        self._end += len(data)

    async def truncate(self, size: int) -> None:
        await self._guarded(self._handle.truncate(size))
        self._end = size

    async def close(self) -> None:
        try:
            with contextlib.suppress(asyncssh.Error, OSError):
                await asyncio.wait_for(self._handle.close(), FILE_TIMEOUT)
        finally:
            await self._hold.aclose()

    async def _full(self, wanted: int) -> bool:
        """Whether the file's filesystem has less room than ``wanted`` bytes (SFTP v3 says
        only "failure" when a write finds the disk full)."""
        try:
            room = await self._sftp.statvfs(posixpath.dirname(self._path))
        except (asyncssh.Error, OSError):
            return False
        return room.bavail * room.frsize < wanted

    async def _guarded(self, request: Awaitable[T]) -> T:
        """The request's answer; its failure as the hpcgate error (naming no path)."""
        try:
            async with asyncio.timeout(FILE_TIMEOUT):
                return await request
        except TimeoutError:
            raise CommandTimeout(
                f"a file request on {self._where} took more than {FILE_TIMEOUT:g} s"
            ) from None
        except asyncssh.SFTPError as exc:
            if isinstance(exc, CONNECTION_ERRORS):
                raise TransportError(f"the connection to {self._where} was lost") from exc
            raise sftp_error(exc, "") from exc
        except (asyncssh.Error, OSError) as exc:
            raise TransportError(f"the connection to {self._where} was lost: {exc}") from exc


async def _read(handle: asyncssh.SFTPClientFile, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes from ``offset`` (a file opened with no encoding gives bytes)."""
    return cast(bytes, await handle.read(size, offset))


async def _opened(sftp: Sftp, path: str, opener: str) -> tuple[asyncssh.SFTPClientFile, int]:
    """The file opened as ``ops.<opener>`` would, and where writing starts."""
    if opener == "open_new":
        attrs = asyncssh.SFTPAttrs(permissions=0o600)
        return await sftp.open(path, _MODES[opener], attrs, encoding=None), 0
    info = await sftp.lstat(path)
    if stat.S_ISLNK(info.permissions or 0):
        raise translate(errno.ELOOP, os.strerror(errno.ELOOP), path)  # as O_NOFOLLOW does
    if not stat.S_ISREG(info.permissions or 0):
        raise translate(errno.EISDIR, "Not a regular file", path)
    handle = await sftp.open(path, _MODES[opener], encoding=None)
    return handle, info.size or 0
