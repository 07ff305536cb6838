"""File access on the local machine, as the gateway itself or as an account.

:class:`FileAccess` is what the files service uses: ``call`` runs one operation of
:mod:`hpcgate.files.ops` and ``open`` returns an :class:`OpenFile` for contents (here one
that wraps an open descriptor; the SSH transport's wraps an SFTP file). As the
gateway (single-user mode) both run in worker threads of this process. As an account
(multi-user mode) they run in a helper process of that account (:mod:`.fshelper`), taken
from a small pool; the kernel checks the account's permissions, never root's.

OS errors are translated here, by errno, into the hpcgate exception tree.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import anyio

from hpcgate.accounts import Account
from hpcgate.files.ops import OPENERS, OPERATIONS
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
from hpcgate.transports.fshelper import encode, receive
from hpcgate.transports.identity import account_environment, as_account

log = logging.getLogger("hpcgate.files")
T = TypeVar("T")

HELPER_TIMEOUT = 600.0  # one operation: a checksum of a very large file is the longest

_BY_ERRNO: dict[int, type[HpcgateError]] = {
    errno.ENOENT: NotFound,
    errno.EACCES: Forbidden,
    errno.EPERM: Forbidden,
    errno.EROFS: Forbidden,
    errno.EEXIST: Conflict,
    errno.ENOTDIR: Conflict,
    errno.EISDIR: Conflict,
    errno.ENOTEMPTY: Conflict,
    errno.EXDEV: Conflict,
    errno.EBUSY: Conflict,
    errno.ENOSPC: InsufficientStorage,
    errno.EDQUOT: InsufficientStorage,
    errno.EFBIG: InsufficientStorage,
    errno.ENAMETOOLONG: BadRequest,
    errno.ELOOP: BadRequest,
    errno.EINVAL: BadRequest,
    errno.EFAULT: BadRequest,
}


# The same table by the text C's strerror gives each number, which programs such as cp, tar
# and coreutils print at the end of their complaints ("cp: cannot stat 'x': No such file").
_BY_MESSAGE: dict[str, type[HpcgateError]] = {os.strerror(n): k for n, k in _BY_ERRNO.items()}


def complaint_kind(text: str) -> type[HpcgateError] | None:
    """The hpcgate error a program's complaint names by its strerror text, if any."""
    return next((kind for message, kind in _BY_MESSAGE.items() if message in text), None)


def translate(number: int, message: str, path: str) -> HpcgateError:
    """The hpcgate error for an OS error number met on ``path``."""
    kind = _BY_ERRNO.get(number, TransportError)
    return kind(f"{message}: {path}" if path else message)


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What identifies an open file's contents (``inode`` is 0 where it is not known)."""

    size: int
    modified_ns: int
    inode: int


class OpenFile(Protocol):
    """A file opened by :meth:`FileAccess.open`: read at offsets, or written at its end."""

    async def info(self) -> FileInfo: ...

    async def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset`` (fewer only at the end of the file)."""
        ...

    async def write(self, data: bytes) -> None:
        """Write all of ``data`` at the end of the file."""
        ...

    async def truncate(self, size: int) -> None: ...

    async def close(self) -> None: ...


class FileAccess(Protocol):
    async def call(self, op: str, path: str, **args: Any) -> Any:
        """Run ``ops.<op>(path=path, **args)``; raises hpcgate errors."""
        ...

    async def open(self, opener: str, path: str) -> OpenFile:
        """``ops.<opener>(path)``: an open file the caller must close."""
        ...


class LocalFile:
    """An open descriptor of this machine's, read and written in worker threads."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    async def info(self) -> FileInfo:
        found = os.fstat(self._fd)
        return FileInfo(found.st_size, found.st_mtime_ns, found.st_ino)

    async def read(self, offset: int, size: int) -> bytes:
        return await anyio.to_thread.run_sync(self._guarded, os.pread, size, offset)

    async def write(self, data: bytes) -> None:
        await anyio.to_thread.run_sync(self._guarded, _write_all, data)

    async def truncate(self, size: int) -> None:
        self._guarded(os.ftruncate, size)

    async def close(self) -> None:
        os.close(self._fd)

    def _guarded(self, action: Callable[..., T], *args: Any) -> T:
        """``action(fd, *args)``; an OS error becomes the hpcgate error, naming no path
        (the caller knows the name the client used)."""
        try:
            return action(self._fd, *args)
        except OSError as exc:
            raise translate(exc.errno or errno.EIO, exc.strerror or str(exc), "") from exc


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class OwnFiles:
    """File access as the gateway's own account, in worker threads."""

    async def call(self, op: str, path: str, **args: Any) -> Any:
        return await anyio.to_thread.run_sync(_local_call, op, path, args)

    async def open(self, opener: str, path: str) -> OpenFile:
        return LocalFile(await anyio.to_thread.run_sync(_local_open, opener, path))


def _local_call(op: str, path: str, args: dict[str, Any]) -> Any:
    try:
        return OPERATIONS[op](path=path, **args)
    except OSError as exc:
        raise translate(exc.errno or errno.EIO, exc.strerror or str(exc), path) from exc


def _local_open(opener: str, path: str) -> int:
    try:
        return OPENERS[opener](path)
    except OSError as exc:
        raise translate(exc.errno or errno.EIO, exc.strerror or str(exc), path) from exc


class AccountFiles:
    """File access as ``account``, through that account's helper processes."""

    def __init__(self, pool: HelperPool, account: Account) -> None:
        self._pool = pool
        self._account = account

    async def call(self, op: str, path: str, **args: Any) -> Any:
        request = {"op": op, "args": {"path": path, **args}}
        reply, _ = await anyio.to_thread.run_sync(self._pool.ask, self._account, request, False)
        return _result(reply, path)

    async def open(self, opener: str, path: str) -> OpenFile:
        request = {"op": opener, "args": {"path": path}}
        reply, fd = await anyio.to_thread.run_sync(self._pool.ask, self._account, request, True)
        _result(reply, path)
        if fd < 0:
            raise TransportError(f"the file helper sent no descriptor for {path}")
        return LocalFile(fd)


def _result(reply: dict[str, Any], path: str) -> Any:
    if reply.get("ok"):
        return reply.get("result")
    raise translate(int(reply.get("errno", errno.EIO)), str(reply.get("message")), path)


class Helper:
    """One helper process of one account and the socket to it. Used by one thread at a time."""

    def __init__(
        self, argv: tuple[str, ...], env: dict[str, str], cwd: str, timeout: float
    ) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.process = subprocess.Popen(
                argv,
                stdin=theirs.fileno(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=env,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as exc:
            ours.close()
            raise TransportError(f"cannot start the file helper: {exc.strerror}") from exc
        finally:
            theirs.close()
        ours.settimeout(timeout)  # a helper stuck (on a hung mount) is dropped, not waited for
        self.sock = ours
        self.used_at = time.monotonic()

    def ask(self, request: dict[str, Any], with_fd: bool) -> tuple[dict[str, Any], int]:
        self.sock.sendall(encode(request))
        reply, fd = receive(self.sock, with_fd)
        if reply is None:
            raise ConnectionError(self._death())
        self.used_at = time.monotonic()
        return reply, fd

    def _death(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=1)
        stderr = self.process.stderr.read().decode(errors="replace") if self.process.stderr else ""
        return f"the file helper exited ({self.process.returncode}): {stderr.strip()[-500:]}"

    def close(self) -> None:
        self.sock.close()  # the helper sees end of stream and exits
        try:
            self.process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(timeout=5)  # one stuck in the kernel is left to init
        if self.process.stderr is not None:
            self.process.stderr.close()


class HelperPool:
    """Idle helper processes per account: reused, at most ``per_account`` at once, closed
    after ``idle_seconds`` unused. Methods block: call them from worker threads."""

    def __init__(
        self, per_account: int = 8, idle_seconds: float = 60.0, timeout: float = HELPER_TIMEOUT
    ) -> None:
        self._per_account = per_account
        self._timeout = timeout
        self._idle_seconds = idle_seconds
        self._idle: dict[str, list[Helper]] = {}
        self._busy: dict[str, int] = {}
        self._lock = threading.Condition()

    def ask(
        self, account: Account, request: dict[str, Any], with_fd: bool
    ) -> tuple[dict[str, Any], int]:
        with self._helper(account) as helper:
            return helper.ask(request, with_fd)

    @contextlib.contextmanager
    def _helper(self, account: Account) -> Iterator[Helper]:
        helper = self._take(account)
        try:
            yield helper
        except TimeoutError as exc:
            self._drop(account, helper)
            raise CommandTimeout(
                f"a file operation as {account.name} took more than {self._timeout:g} s"
            ) from exc
        except (OSError, ConnectionError) as exc:
            self._drop(account, helper)
            raise TransportError(f"file helper for {account.name} failed: {exc}") from exc
        except BaseException:
            self._drop(account, helper)
            raise
        self._give_back(account, helper)

    def _take(self, account: Account) -> Helper:
        with self._lock:
            while not self._idle.get(account.name) and self._full(account):
                self._lock.wait(timeout=1)
            self._busy[account.name] = self._busy.get(account.name, 0) + 1
            idle = self._idle.get(account.name)
            if idle:
                return idle.pop()
        try:
            return _start(account, self._timeout)
        except BaseException:
            self._release(account)
            raise

    def _full(self, account: Account) -> bool:
        return self._busy.get(account.name, 0) >= self._per_account

    def _give_back(self, account: Account, helper: Helper) -> None:
        with self._lock:
            self._idle.setdefault(account.name, []).append(helper)
            self._busy[account.name] -= 1
            stale = self._stale()
            self._lock.notify_all()
        for old in stale:
            old.close()

    def _drop(self, account: Account, helper: Helper) -> None:
        helper.close()
        self._release(account)

    def _release(self, account: Account) -> None:
        with self._lock:
            self._busy[account.name] -= 1
            self._lock.notify_all()

    def _stale(self) -> list[Helper]:
        limit = time.monotonic() - self._idle_seconds
        stale = []
        for name, helpers in self._idle.items():
            stale += [helper for helper in helpers if helper.used_at < limit]
            self._idle[name] = [helper for helper in helpers if helper.used_at >= limit]
        return stale

    def close(self) -> None:
        with self._lock:
            helpers = [helper for idle in self._idle.values() for helper in idle]
            self._idle.clear()
        for helper in helpers:
            helper.close()


def helper_argv() -> tuple[str, ...]:
    return (sys.executable, "-I", "-m", "hpcgate.transports.fshelper")


def _start(account: Account, timeout: float) -> Helper:
    cwd = account.home if os.path.isdir(account.home) else "/"
    argv = as_account(helper_argv(), account)
    return Helper(argv, account_environment(account), cwd, timeout)
