"""The local transport: commands run as child processes of the gateway, files are local,
streams are TCP connections from this machine.

For an account (multi-user mode, the gateway is root) a command runs with the account's
uid, gid and groups (through ``setpriv``, which execs the command directly), in its home
directory, with an environment built from scratch. File accesses go through the account's
helper processes (:mod:`.local_files`), so the kernel checks the account's permissions and
root's are never used on the account's behalf. A stream is a plain TCP connection made by
the gateway's process: TCP carries no account, so ``account`` changes nothing there.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import ByteStream, Process
from anyio.streams.buffered import BufferedByteReceiveStream

from hpcgate.accounts import Account, UserEntry, local_user
from hpcgate.model.commands import Command, CommandResult, FileCommand
from hpcgate.model.errors import CommandTimeout, TransportError
from hpcgate.transports import tcp
from hpcgate.transports.anchored import anchored
from hpcgate.transports.filesystem import FileSystem
from hpcgate.transports.helper_pool import HelperPool
from hpcgate.transports.identity import account_environment, as_account, clean_environment
from hpcgate.transports.local_files import InHelper, InThread, LocalFileSystem
from hpcgate.transports.os_errors import os_error


class LocalTransport:
    """Runs argv lists as child processes; no shell is involved.

    Children are spawned with :class:`subprocess.Popen` (vfork/posix_spawn, ~1 ms) in worker
    threads: the event loop's own spawn (uvloop forks the whole gateway) costs ~13 ms.
    """

    def __init__(self) -> None:
        self._helpers = HelperPool()
        self._own_files = LocalFileSystem(InThread())
        self._home: str | None = None

    def files(self, account: Account | None = None) -> FileSystem:
        """File access as ``account`` (through its helper processes) or as ourselves."""
        return self._local_files(account)

    async def stream(self, host: str, port: int, account: Account | None = None) -> ByteStream:
        """A TCP connection from this machine (the same whoever asks)."""
        try:
            return await tcp.connect(host, port)
        except OSError as exc:  # anyio's (for a name) is caused by the address's own
            reason = exc.__cause__ if isinstance(exc.__cause__, OSError) else exc
            raise os_error(reason, f"{host}:{port}") from exc

    async def start(self) -> None:
        """Nothing to prepare: helper processes start on first use."""

    async def lookup_user(self, name: str) -> UserEntry | None:
        return await anyio.to_thread.run_sync(local_user, name)

    async def own_home(self) -> str:
        """The gateway's own home (looked up once)."""
        if self._home is None:
            self._home = await anyio.to_thread.run_sync(os.path.expanduser, "~")
        return self._home

    async def close(self) -> None:
        await anyio.to_thread.run_sync(self._helpers.close)

    async def run(
        self, command: Command, timeout: float, account: Account | None = None
    ) -> CommandResult:
        argv = as_account(command.argv, account)
        identity = _identity(command, account)
        return await anyio.to_thread.run_sync(
            _run, argv, command.stdin, identity, timeout, limiter=_limiter()
        )

    async def run_long(
        self, command: Command, account: Account | None, on_line: Callable[[str], None]
    ) -> CommandResult:
        """Run a command that may take hours (a copy, an archive): no timeout, each line of
        its stderr passed to ``on_line`` as it comes, and killed (its whole process group)
        if the caller is cancelled."""
        return await _run_long(command, account, on_line, ())

    async def run_files(
        self, command: FileCommand, account: Account | None, on_line: Callable[[str], None]
    ) -> CommandResult:
        """As :meth:`run_long`, each path given as a name under a descriptor opened
        beneath its root as ``account`` (:mod:`.anchored`)."""

        def confined(root: str) -> LocalFileSystem:
            return self._local_files(account).beneath(root)

        async with anchored(command, confined) as (argv, fds):
            return await _run_long(Command(argv, env={}), account, on_line, fds)

    def _local_files(self, account: Account | None) -> LocalFileSystem:
        if account is None:
            return self._own_files
        return LocalFileSystem(InHelper(self._helpers, account))


async def _run_long(
    command: Command,
    account: Account | None,
    on_line: Callable[[str], None],
    fds: tuple[int, ...],
) -> CommandResult:
    """The command, as ``account``, with the descriptors ``fds`` passed to it."""
    identity = _identity(command, account)
    process = await anyio.open_process(
        as_account(command.argv, account),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        start_new_session=True,
        env=identity["env"],
        cwd=identity.get("cwd"),
        pass_fds=fds,
    )
    try:
        lines = await _lines(process, on_line)
        await process.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 9)
        with anyio.CancelScope(shield=True):
            await process.wait()
        raise
    return CommandResult(process.returncode or 0, b"", "\n".join(lines[-20:]).encode())


def _identity(command: Command, account: Account | None) -> dict[str, Any]:
    """The environment and directory of a child run as ``account`` (or as ourselves)."""
    if account is None:
        env = None if command.env is None else {**clean_environment(), **command.env}
        return {"env": env}
    return {
        "env": {**account_environment(account), **(command.env or {})},
        "cwd": account.home if os.path.isdir(account.home) else "/",
    }


MAX_LINE = 65536
_LIMITER: list[anyio.CapacityLimiter] = []
MAX_CONCURRENT_COMMANDS = 64


def _limiter() -> anyio.CapacityLimiter:
    """One limiter for all commands (created in the running event loop on first use)."""
    if not _LIMITER:
        _LIMITER.append(anyio.CapacityLimiter(MAX_CONCURRENT_COMMANDS))
    return _LIMITER[0]


def _run(
    argv: tuple[str, ...], stdin: bytes | None, identity: dict[str, Any], timeout: float
) -> CommandResult:
    """Run to completion in this (worker) thread; the whole process group dies on timeout."""
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            **identity,
        )
    except OSError as exc:
        raise TransportError(f"cannot run '{argv[0]}': {exc.strerror}") from exc
    try:
        stdout, stderr = process.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(process)
        process.communicate()
        raise CommandTimeout(f"'{argv[0]}' did not finish in {timeout:g} s") from None
    return CommandResult(process.returncode, stdout, stderr)


async def _lines(process: Process, on_line: Callable[[str], None]) -> list[str]:
    """Every line the process writes to stderr, each also handed to ``on_line``; a line
    longer than :data:`MAX_LINE` comes in pieces of that size (stderr is always read to
    its end, so the process never blocks on a full pipe)."""
    seen: list[str] = []
    assert process.stderr is not None
    stream = BufferedByteReceiveStream(process.stderr)
    while True:
        try:
            raw = await stream.receive_until(b"\n", MAX_LINE)
        except anyio.DelimiterNotFound:
            raw = await stream.receive(MAX_LINE)
        except (anyio.EndOfStream, anyio.IncompleteRead):
            return seen
        for piece in _pieces(raw):
            line = piece.decode(errors="replace")
            on_line(line)
            seen = [*seen[-50:], line]


def _pieces(raw: bytes) -> list[bytes]:
    """A line cut to :data:`MAX_LINE` bytes at most a piece: its newline may come in the
    same read that takes the buffer past the limit, so the line found can be longer."""
    return [raw[start : start + MAX_LINE] for start in range(0, len(raw) or 1, MAX_LINE)]


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 9)
