"""The local transport's :class:`~.filesystem.FileSystem`: the functions of
:mod:`.local_ops` on this machine's files, as the gateway itself or as an account.

One class, :class:`LocalFileSystem`, written once and given how its operations run:

- :class:`InThread` (single-user mode): in worker threads of the gateway's process;
- :class:`InHelper` (multi-user mode): in a helper process of the account
  (:mod:`.helper_pool`, :mod:`.fshelper`), which names the operation on its socket, so the
  kernel checks the account's own permissions, never root's.

Either way file contents move through an open descriptor (the helper hands it over), read
and written in worker threads here (:class:`LocalFile`). OS errors become hpcgate errors
by :mod:`.os_errors`' table.
"""

from __future__ import annotations

import errno
import functools
import inspect
import os
from collections.abc import Awaitable, Callable
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar, cast

import anyio

from hpcgate.accounts import Account
from hpcgate.model.errors import NotFound, TransportError
from hpcgate.model.files import Checksum, Content, FileEntry, FileType
from hpcgate.transports import local_ops as ops
from hpcgate.transports.filesystem import FileInfo, OpenFile
from hpcgate.transports.helper_pool import HelperPool
from hpcgate.transports.os_errors import errno_error, os_error

P = ParamSpec("P")
T = TypeVar("T")
Operation = Callable[Concatenate[str, P], T]  # a function of local_ops: a path, then more


class Runner(Protocol):
    """How :class:`LocalFileSystem` runs an operation of :mod:`.local_ops` on ``path``."""

    async def run(self, op: Operation[P, T], path: str, *args: P.args, **kwargs: P.kwargs) -> T:
        """``op(path, ...)``; its OSError as the hpcgate error, naming ``path``."""
        ...

    async def open(self, opener: Callable[[str, str], int], path: str, root: str) -> int:
        """The descriptor ``opener(path, root)`` opened, ours to close."""
        ...


class InThread:
    """Operations as the gateway's own account, in worker threads."""

    async def run(self, op: Operation[P, T], path: str, *args: P.args, **kwargs: P.kwargs) -> T:
        return await anyio.to_thread.run_sync(
            _guarded, functools.partial(op, path, *args, **kwargs), path
        )

    async def open(self, opener: Callable[[str, str], int], path: str, root: str) -> int:
        call = functools.partial(opener, path, root)
        return await anyio.to_thread.run_sync(_guarded, call, path)


def _guarded(call: Callable[[], T], path: str) -> T:
    try:
        return call()
    except OSError as exc:
        raise os_error(exc, path) from exc


class InHelper:
    """Operations as ``account``, in that account's helper processes: the request names
    the operation and its arguments (the helper's wire format, :mod:`.fshelper`)."""

    def __init__(self, pool: HelperPool, account: Account) -> None:
        self._pool = pool
        self._account = account

    async def run(self, op: Operation[P, T], path: str, *args: P.args, **kwargs: P.kwargs) -> T:
        named = inspect.signature(op).bind(path, *args, **kwargs).arguments
        reply, _ = await self._ask({"op": op.__name__, "args": dict(named)}, False)
        return cast(T, _result(reply, path))

    async def open(self, opener: Callable[[str, str], int], path: str, root: str) -> int:
        asked = {"op": opener.__name__, "args": {"path": path, "root": root}}
        reply, fd = await self._ask(asked, True)
        _result(reply, path)
        if fd < 0:
            raise TransportError(f"the file helper sent no descriptor for {path}")
        return fd

    async def _ask(self, request: dict[str, Any], with_fd: bool) -> tuple[dict[str, Any], int]:
        return await anyio.to_thread.run_sync(self._pool.ask, self._account, request, with_fd)


def _result(reply: dict[str, Any], path: str) -> Any:
    if reply.get("ok"):
        return reply.get("result")
    raise errno_error(int(reply.get("errno", errno.EIO)), str(reply.get("message")), path)


class LocalFileSystem:
    """This machine's files, through ``runner`` (as the gateway, or as an account), each
    found beneath ``root`` (:mod:`.beneath`): ``/`` until :meth:`beneath` confines it."""

    def __init__(self, runner: Runner, root: str = "/") -> None:
        self._runner = runner
        self._root = root

    def beneath(self, root: str) -> LocalFileSystem:
        return LocalFileSystem(self._runner, root)

    async def _run(self, op: Operation[P, T], path: str, *args: P.args, **kwargs: P.kwargs) -> T:
        run: Callable[..., Awaitable[T]] = self._runner.run  # every op takes ``root``
        return await run(op, path, *args, root=self._root, **kwargs)

    async def _open(self, opener: Callable[[str, str], int], path: str) -> int:
        return await self._runner.open(opener, path, self._root)

    async def resolve(self, path: str, follow: bool) -> str:
        return await self._run(ops.resolve, path, follow)

    async def lstat(self, path: str, numeric: bool = False) -> FileEntry:
        return FileEntry(**await self._run(ops.lstat, path, numeric))

    async def listing(self, path: str, hidden: bool, depth: int, numeric: bool) -> list[FileEntry]:
        found = await self._run(ops.listing, path, hidden, depth, numeric)
        return [FileEntry(**entry) for entry in found]

    async def size(self, path: str) -> int | None:
        try:
            return await self._run(ops.size, path)
        except NotFound:
            return None

    async def usage(self, path: str) -> int:
        return await self._run(ops.usage, path)

    async def read(self, path: str, offset: int, size: int) -> bytes:
        opened = await self.open_read(path)
        try:
            return await opened.read(offset, size)
        finally:
            await opened.close()

    async def head(self, path: str, lines: int | None, size: int | None) -> Content:
        return Content(path=path, **await self._run(ops.head, path, lines, size))

    async def tail(self, path: str, lines: int | None, size: int | None) -> Content:
        return Content(path=path, **await self._run(ops.tail, path, lines, size))

    async def checksum(self, path: str, algorithm: str) -> Checksum:
        digest = await self._run(ops.checksum, path, algorithm)
        return Checksum(path=path, algorithm=algorithm, checksum=digest)

    async def file_type(self, path: str) -> FileType:
        return FileType(path=path, **await self._run(ops.file_type, path))

    async def open_read(self, path: str) -> OpenFile:
        return LocalFile(await self._open(ops.open_read, path))

    async def open_new(self, path: str) -> OpenFile:
        return LocalFile(await self._open(ops.open_new, path))

    async def open_append(self, path: str) -> OpenFile:
        return LocalFile(await self._open(ops.open_append, path))

    async def open_parent(self, path: str) -> int:
        """An ``O_PATH`` descriptor of the directory holding ``path``'s last name, opened
        beneath the root (the root's own, for the root); the caller closes it."""
        return await self._open(ops.open_parent, path)

    async def open_target(self, path: str) -> int:
        """An ``O_PATH`` descriptor of the existing regular file at ``path``, opened
        beneath the root; a symlink there is refused. The caller closes it."""
        return await self._open(ops.open_target, path)

    async def mkdir(self, path: str, parents: bool) -> None:
        await self._run(ops.mkdir, path, parents)

    async def remove(self, path: str, recursive: bool) -> None:
        await self._run(ops.remove, path, recursive)

    async def chmod(self, path: str, mode: int) -> FileEntry:
        return FileEntry(**await self._run(ops.chmod, path, mode))

    async def chown(self, path: str, owner: str | None, group: str | None) -> FileEntry:
        return FileEntry(**await self._run(ops.chown, path, owner, group))

    async def symlink(self, path: str, target: str) -> FileEntry:
        return FileEntry(**await self._run(ops.symlink, path, target))

    async def publish(self, path: str, target: str, overwrite: bool, mode: int) -> FileEntry:
        return FileEntry(**await self._run(ops.publish, path, target, overwrite, mode))

    async def discard(self, path: str) -> None:
        await self._run(ops.discard, path)


#: preadv's flag that makes a read fail rather than wait for a disk (Linux 4.14; None:
#: not on this system).
NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


class LocalFile:
    """An open descriptor of this machine's, read and written in worker threads."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def info(self) -> FileInfo:
        found = os.fstat(self._fd)
        return FileInfo(found.st_size, found.st_mtime_ns, found.st_ino)

    async def read(self, offset: int, size: int) -> bytes:
        return await anyio.to_thread.run_sync(self._guarded, os.pread, size, offset)

    async def read_some(self, offset: int, size: int) -> bytes:
        return await self.read(offset, size)  # one pread: already a single piece

    async def read_into(self, offset: int, buffer: memoryview) -> int:
        """Bytes from ``offset`` into ``buffer``, as many as fit (fewer only at the end of
        the file); their count. What the page cache holds is read without leaving the
        event loop (``RWF_NOWAIT`` never waits for a disk); the rest, or all of it where
        the file system can't say, in a worker thread: a long read of a cached file
        takes no thread hop per piece."""
        done = self._cached_into(offset, buffer)
        while done < len(buffer):
            rest = buffer[done:]
            try:
                at = offset + done
                more = await anyio.to_thread.run_sync(self._guarded, os.preadv, [rest], at)
            finally:
                rest.release()  # the worker thread may hold its arguments until its next call
            if not more:
                break  # the end of the file
            done += more
        return done

    def _cached_into(self, offset: int, buffer: memoryview) -> int:
        if NOWAIT is None:
            return 0
        try:
            return os.preadv(self._fd, [buffer], offset, NOWAIT)
        except (BlockingIOError, InterruptedError):
            return 0  # not all in the page cache: the worker thread reads it
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                return 0  # a file system (or kernel) without RWF_NOWAIT
            raise os_error(exc, "") from exc

    async def write(self, data: bytes) -> None:
        await anyio.to_thread.run_sync(self._guarded, _write_all, data)

    async def truncate(self, size: int) -> None:
        self._guarded(os.ftruncate, size)

    async def chmod(self, mode: int) -> None:
        self._guarded(os.fchmod, mode)

    async def close(self) -> None:
        os.close(self._fd)

    def _guarded(self, action: Callable[..., T], *args: Any) -> T:
        """``action(fd, *args)``; an OS error becomes the hpcgate error, naming no path
        (the caller knows the name the client used)."""
        try:
            return action(self._fd, *args)
        except OSError as exc:
            raise os_error(exc, "") from exc


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
