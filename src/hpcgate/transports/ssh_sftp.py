"""SFTP on the pooled connections: one request (or a few) on a login's SFTP client, and a
file held open over SFTP.

A request is bounded by :data:`FILE_TIMEOUT`. When the connection fails under a request
that changes nothing, it is made once more on a fresh connection; one that may have taken
effect (a removal, a rename) is not. A request stuck on the host holds the connection's one
SFTP channel, so its connection is dropped.

A file opened for reading is read ahead (:class:`ReadAhead`): while one chunk of a download
is sent on, the requests for the next are already on their way, so the SFTP channel does
not idle between chunks. A file opened for writing is written behind (:class:`WriteBehind`):
a write returns once its requests are sent, while the next chunk of an upload is received,
and its answers are awaited later; so the channel does not drain between chunks either.

A file that keeps moving goes over to OpenSSH's client (:mod:`.ssh_openssh`) when the
transport has one (``ssh.bulk``): once :data:`BULK_AFTER` bytes have been read or written
in order, the same file is opened again on an SFTP session carried by ``ssh``, checked to
be the file held (the same size and modification time; for writing, a regular file that
is not a link and ends where the writes ended), and the rest of the transfer goes there.
Should that session not start, or the file not pass the check, the transfer goes on where
it was. Small reads, ranges and small uploads never start a process.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import errno
import logging
import os
import posixpath
import stat
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Any, TypeVar, cast

import asyncssh

from hpcgate.model.errors import CommandTimeout, InsufficientStorage, TransportError
from hpcgate.transports import file_rules
from hpcgate.transports.filesystem import FileInfo
from hpcgate.transports.os_errors import errno_error
from hpcgate.transports.ssh_errors import lost_connection, ssh_error, translated
from hpcgate.transports.ssh_pool import ConnectionPool

log = logging.getLogger("hpcgate.ssh")

T = TypeVar("T")
Sftp = asyncssh.SFTPClient
Bulk = Callable[[str], AbstractAsyncContextManager[Sftp]]  # a login's SFTP over OpenSSH

FILE_TIMEOUT = 120.0  # one SFTP request or file command (a read is at most 1 MiB)
AHEAD = 16  # read requests kept in flight ahead of a sequential reader (asyncssh's own default)
AHEAD_BLOCK = 64 * 1024  # their size when the server states no limit (SFTP's safe size)
BEHIND = 16  # write requests kept in flight behind a sequential writer
BULK_AFTER = 8 << 20  # bytes moved in order before a file goes over to OpenSSH's client


async def on_sftp(
    pool: ConnectionPool,
    where: str,
    login: str,
    path: str,
    operation: Callable[[Sftp], Awaitable[T]],
    retry: bool = True,
) -> T:
    """``operation`` on the SFTP client of ``login``'s connection to ``where``; done once
    more on a fresh connection if the connection fails under it, unless ``retry`` is off
    (an operation that may have taken effect). Its errors become hpcgate errors."""
    for attempt in (1, 2) if retry else (2,):
        async with pool.lease(login, channel=False) as lease:
            try:
                async with asyncio.timeout(FILE_TIMEOUT):
                    return await operation(await lease.sftp())
            except TimeoutError:
                lease.broken()  # a request stuck on the host holds the SFTP channel
                raise CommandTimeout(
                    f"a file operation on {where} took more than {FILE_TIMEOUT:g} s"
                ) from None
            except (asyncssh.Error, OSError) as exc:
                if lost_connection(exc):
                    lease.broken()
                    if attempt == 1:
                        continue
                raise ssh_error(exc, where, login, path) from exc
    raise AssertionError("unreachable")


async def read_bytes(handle: asyncssh.SFTPClientFile, size: int, offset: int) -> bytes:
    """Up to ``size`` bytes from ``offset`` (a file opened with no encoding gives bytes)."""
    return cast(bytes, await handle.read(size, offset))


class ReadAhead:
    """Reads of an SFTP file that move forward, served from requests already sent.

    :data:`AHEAD` requests of one block each (the largest read the server takes) are kept
    in flight past the last byte returned, never past ``end``; so at most ``AHEAD`` blocks
    (4 MiB with OpenSSH's 255 KiB) wait in memory, whatever the file's size. A read that
    does not start where the last one ended drops them and starts again from there; so
    does one that failed or was cancelled. A request is awaited shielded, so a cancelled
    read leaves it to end by itself.
    """

    def __init__(self, handle: asyncssh.SFTPClientFile, end: int) -> None:
        self._handle = handle
        self._end = end
        self._block = handle.read_len or AHEAD_BLOCK
        self._at = 0  # the offset of the first byte of _left
        self._sent = 0  # the offset the next request reads from
        self._left = memoryview(b"")
        self._pending: collections.deque[asyncio.Task[bytes]] = collections.deque()
        self._dropped: set[asyncio.Task[bytes]] = set()  # held until done (asyncio does not)

    async def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset`` (fewer only at the end of the file)."""
        if offset != self._at:
            self._at = offset
            self.stop()
        parts: list[memoryview] = []
        wanted = size
        try:
            while wanted > 0 and (self._left or await self._next()):
                part = self._left[:wanted]
                parts.append(part)
                self._left = self._left[len(part) :]
                self._at += len(part)
                wanted -= len(part)
        except BaseException:
            self.stop()  # a failed or cancelled read starts afresh from where it stood
            raise
        return b"".join(parts)

    async def _next(self) -> bool:
        """The next block into ``_left``; False at the end of the file."""
        self._fill()
        if not self._pending:
            return False
        data = await asyncio.shield(self._pending.popleft())
        if len(data) < min(self._block, self._end - self._at):
            self._end = self._at + len(data)  # the file shrank: nothing more is asked
            self._drop()
        self._left = memoryview(data)
        return bool(data)

    def _fill(self) -> None:
        while len(self._pending) < AHEAD and self._sent < self._end:
            size = min(self._block, self._end - self._sent)
            request = asyncio.ensure_future(read_bytes(self._handle, size, self._sent))
            request.add_done_callback(_seen)
            self._pending.append(request)
            self._sent += size

    def stop(self) -> None:
        """Forget what was read ahead: the next read asks again from where it starts."""
        self._drop()
        self._left = memoryview(b"")
        self._sent = self._at

    def _drop(self) -> None:
        """Forget the requests in flight. They are left to finish, not cancelled: asyncssh
        leaves the tasks under a cancelled read running, and their errors unread."""
        for request in self._pending:
            self._dropped.add(request)
            request.add_done_callback(self._dropped.discard)
        self._pending.clear()


def _seen(request: asyncio.Future[Any]) -> None:
    """Mark a read-ahead's error as read: one nobody waits for any more is no news."""
    if not request.cancelled():
        request.exception()


async def write_bytes(handle: asyncssh.SFTPClientFile, data: memoryview, offset: int) -> None:
    """``data`` written at ``offset`` (one request when it is at most a block long)."""
    await handle.write(cast(bytes, data), offset)  # asyncssh sends any bytes-like object


class WriteBehind:
    """Writes of an SFTP file whose answers are awaited later, not before the next write.

    Each write is cut into requests of one block (the largest write the server takes) and
    sent; it waits only while :data:`BEHIND` requests are still unanswered, so at most that
    many blocks (4 MiB with OpenSSH's 255 KiB) wait in memory, whatever the file's size. The
    first failure is raised by the next write or by :meth:`flush`, once every request sent
    has ended, and the file is then cut back to the end of the bytes whose writes all
    succeeded (the server runs requests in order, but a later one may succeed where an
    earlier failed, which would leave a hole): a resumable upload goes on from there.
    """

    def __init__(self, handle: asyncssh.SFTPClientFile, end: int) -> None:
        self._handle = handle
        self._block = handle.write_len or AHEAD_BLOCK
        self._pending: collections.deque[tuple[asyncio.Task[None], int]] = collections.deque()
        self._done = end  # every byte before this offset was written

    async def write(self, data: bytes, offset: int) -> None:
        """Send ``data`` for ``offset``; raise the failure of an earlier write, if any."""
        view = memoryview(data)
        for start in range(0, len(view), self._block):
            while len(self._pending) >= BEHIND:
                await self._oldest()
            part = view[start : start + self._block]
            request = asyncio.ensure_future(write_bytes(self._handle, part, offset + start))
            request.add_done_callback(_seen)
            self._pending.append((request, offset + start + len(part)))

    async def flush(self) -> None:
        """Wait for every write sent; raise the first that failed."""
        while self._pending:
            await self._oldest()

    async def settle(self) -> None:
        """Wait for every write sent, whatever became of them (before a truncation)."""
        requests = [request for request, _ in self._pending]
        self._pending.clear()
        if requests:
            await asyncio.shield(asyncio.wait(requests))

    async def _oldest(self) -> None:
        request, end = self._pending[0]
        try:
            await asyncio.shield(request)
        except asyncio.CancelledError:
            if not request.done():
                raise  # the waiter was cancelled: the request stays pending
            await self._failed()
            raise
        except BaseException:
            await self._failed()
            raise
        self._pending.popleft()
        self._done = end

    async def _failed(self) -> None:
        """After a failed write: let the others end, then cut the file back to the bytes
        written without a gap (best effort: the failure raised is the write's)."""
        await self.settle()
        with contextlib.suppress(asyncssh.Error, OSError):
            await self._handle.truncate(self._done)


class SftpFile:
    """A file open over SFTP. It keeps its connection leased (so the pool does not close it
    as idle) until it is closed."""

    def __init__(
        self, handle: asyncssh.SFTPClientFile, sftp: Sftp, hold: contextlib.AsyncExitStack,
        path: str, end: int, where: str, login: str, mode: str, bulk: Bulk | None = None,
    ) -> None:  # fmt: skip
        self._handle = handle
        self._sftp = sftp
        self._hold = hold
        self._path = path
        self._end = end
        self._where = where
        self._login = login
        self._ahead = ReadAhead(handle, end) if mode == "rb" else None
        self._behind = WriteBehind(handle, end) if mode != "rb" else None
        self._bulk = bulk  # None once the file has gone over to it (or tried to)
        self._next = 0  # where a read in order would start
        self._run = 0  # bytes read or written in order, up to now

    @classmethod
    async def open(
        cls, pool: ConnectionPool, where: str, login: str, path: str, mode: str,
        bulk: Bulk | None = None,
    ) -> SftpFile:  # fmt: skip
        """``path`` opened with ``mode``: ``rb`` (read), ``xb`` (a new file) or ``r+b``
        (write at the end of a regular file); a long transfer goes over to ``bulk``."""
        hold = contextlib.AsyncExitStack()
        try:
            with translated(where, login, path):
                lease = await hold.enter_async_context(pool.lease(login, channel=False))
                sftp = await lease.sftp()
                async with asyncio.timeout(FILE_TIMEOUT):
                    handle, end = await _opened(sftp, path, mode)
        except BaseException:
            await hold.aclose()
            raise
        return cls(handle, sftp, hold, path, end, where, login, mode, bulk)

    async def info(self) -> FileInfo:
        await self._flush()
        attrs = await self._guarded(self._handle.stat())
        return FileInfo(attrs.size or 0, (attrs.mtime or 0) * 1_000_000_000, 0)

    async def read(self, offset: int, size: int) -> bytes:
        """Nothing past the size the file had when opened: no request is sent past the end
        (a file opened for reading is read ahead; one opened for writing is not)."""
        if self._ahead is not None:
            if offset != self._next:
                self._run = 0
            if self._bulk is not None and self._run >= BULK_AFTER:
                await self._go_bulk()
            data = await self._guarded(self._ahead.read(offset, size))
            self._next = offset + len(data)
            self._run += len(data)
            return data
        await self._flush()
        wanted = min(size, self._end - offset)
        if wanted <= 0:
            return b""
        return await self._guarded(read_bytes(self._handle, wanted, offset))

    async def read_some(self, offset: int, size: int) -> bytes:
        return await self.read(offset, size)

    async def write(self, data: bytes) -> None:
        """Sent, not yet answered (:class:`WriteBehind`): a failure is raised by a later
        write, or by :meth:`info`, :meth:`read`, :meth:`chmod` or :meth:`close`."""
        if self._behind is None:
            raise TransportError("the file was opened for reading")
        if self._bulk is not None and self._run >= BULK_AFTER:
            await self._go_bulk()
            assert self._behind is not None
        await self._written(self._behind.write(data, self._end), len(data))
        self._end += len(data)
        self._run += len(data)

    async def truncate(self, size: int) -> None:
        """Cut the file (what was still being written is waited for, whatever became of
        it: the cut decides what the file holds)."""
        if self._behind is not None:
            await self._guarded(self._behind.settle())
        await self._guarded(self._handle.truncate(size))
        self._end = size
        self._run = 0

    async def chmod(self, mode: int) -> None:
        await self._flush()
        await self._guarded(self._handle.chmod(mode))  # fsetstat: the handle, not the name

    async def close(self) -> None:
        """Release the file; a write that failed since the last check is raised here, after
        the release (so a caller that closes before it publishes never publishes it)."""
        if self._ahead is not None:
            self._ahead.stop()
        try:
            await self._flush()
        finally:
            try:
                with contextlib.suppress(asyncssh.Error, OSError):
                    await asyncio.wait_for(self._handle.close(), FILE_TIMEOUT)
            finally:
                await self._hold.aclose()

    async def _go_bulk(self) -> None:
        """Go on over OpenSSH's client with the same file, or stay here if it cannot."""
        bulk, self._bulk = self._bulk, None
        assert bulk is not None
        await self._flush()
        session = contextlib.AsyncExitStack()
        try:
            sftp = await session.enter_async_context(bulk(self._login))
            async with asyncio.timeout(FILE_TIMEOUT):
                handle = await self._same_file(sftp)
        except BaseException as exc:
            await session.aclose()
            if not isinstance(exc, Exception):
                raise
            log.warning("%s: a transfer stays on asyncssh's SFTP: %s", self._where, exc)
            return
        self._hold.push_async_callback(session.aclose)  # ended after the file is closed
        await self._swap(handle, sftp)

    async def _same_file(self, sftp: Sftp) -> asyncssh.SFTPClientFile:
        """The file held, opened on ``sftp``: refused unless it is still the same file."""
        held = await self._handle.stat()
        mode = "rb" if self._ahead is not None else "r+b"
        handle, end = await _opened(sftp, self._path, mode)
        try:
            now = await handle.stat()
            if (now.size, now.mtime) != (held.size, held.mtime) or (
                mode == "r+b" and end != self._end
            ):
                raise TransportError("the file changed while it was moved")
        except BaseException:
            with contextlib.suppress(asyncssh.Error, OSError):
                await handle.close()
            raise
        return handle

    async def _swap(self, handle: asyncssh.SFTPClientFile, sftp: Sftp) -> None:
        """Go on with ``handle``; the file's handle on the pooled connection is closed."""
        old, self._handle, self._sftp = self._handle, handle, sftp
        if self._ahead is not None:
            self._ahead.stop()
            self._ahead = ReadAhead(handle, self._end)
        else:
            self._behind = WriteBehind(handle, self._end)
        with contextlib.suppress(asyncssh.Error, OSError, TimeoutError):
            await asyncio.wait_for(old.close(), FILE_TIMEOUT)

    async def _flush(self) -> None:
        if self._behind is not None:
            await self._written(self._behind.flush(), AHEAD_BLOCK)

    async def _written(self, writing: Awaitable[None], wanted: int) -> None:
        """``writing``'s failure as the hpcgate error, a full disk as 507."""
        try:
            await self._guarded(writing)
        except TransportError:
            if await self._full(wanted):
                raise InsufficientStorage(os.strerror(errno.ENOSPC)) from None
            raise

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
                with translated(self._where, self._login):
                    return await request
        except TimeoutError:
            raise CommandTimeout(
                f"a file request on {self._where} took more than {FILE_TIMEOUT:g} s"
            ) from None


async def _opened(sftp: Sftp, path: str, mode: str) -> tuple[asyncssh.SFTPClientFile, int]:
    """The file opened as :mod:`.local_ops`' openers would, and where writing starts."""
    if mode == "xb":
        attrs = asyncssh.SFTPAttrs(permissions=0o600)
        return await sftp.open(path, mode, attrs, encoding=None), 0
    info = await sftp.lstat(path)
    if stat.S_ISLNK(info.permissions or 0):
        raise errno_error(errno.ELOOP, os.strerror(errno.ELOOP), path)  # as O_NOFOLLOW does
    refused = file_rules.irregular(info.permissions or 0)
    if refused is not None:
        raise errno_error(*refused, path)
    handle = await sftp.open(path, mode, encoding=None)
    return handle, info.size or 0
