"""The helper processes of the local transport's accounts (multi-user mode).

Each runs :mod:`.fshelper` as one account, and answers the file operations of
:mod:`.local_ops` over a Unix socket, so the kernel checks the account's permissions,
never root's. A pool keeps a few per account, reuses them, and closes them when idle; one
stuck in the kernel (a hung mount) is dropped after a timeout.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

from hpcgate.accounts import Account
from hpcgate.model.errors import CommandTimeout, TransportError
from hpcgate.transports.fshelper import encode, receive
from hpcgate.transports.identity import account_environment, as_account

HELPER_TIMEOUT = 600.0  # one operation: a checksum of a very large file is the longest


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
