"""The SSH transport: commands run on a login node the gateway does not run on, over
pooled asyncssh connections, as the caller's account (or as ``user`` for the gateway's own;
with identity ``forced``, as ``user`` for everyone).

A command's argv becomes the one string SSH carries with :func:`shlex.join`, which the
login shell (sh, bash, zsh, ksh: POSIX quoting; not csh) splits back into exactly that
argv. Its variables go in front as ``env -- NAME=VALUE ...``, so sshd needs no
``AcceptEnv``. ``run`` is also bounded on the host: the argv runs under coreutils'
``timeout -s KILL`` a few seconds past the gateway's own timeout, in case the connection
breaks before the gateway can kill it.

When a command times out or its caller is cancelled, the gateway asks sshd to SIGKILL the
session's process group (the SSH ``signal`` request, OpenSSH 7.9+) and closes the channel.

A command that could not start because its connection had died (the channel could not be
opened) is tried once more on a fresh connection. One whose connection broke after it was
sent is never repeated: it may have run (a submit, say), so it fails with 503 and the
caller decides.

Files (``files()``) go over SFTP on the same connection (:mod:`.ssh_files`), in every
identity mode, a long transfer over OpenSSH's own client (:mod:`.ssh_openssh`, ``bulk``);
for a functional account behind hpcgate-forced, reads, sizes and directories are commands
instead, ``tail``, ``stat`` and ``mkdir`` (:mod:`.ssh_commands`), so jobs work even where
the site turns that entry point's SFTP off (``--no-sftp``).
Streams to the cluster (``stream()``) are ``direct-tcpip`` channels (:mod:`.ssh_stream`)
or, for a functional account whose key may not forward, sessions running hpcgate-forced's
relay (:mod:`.ssh_relay`), as ``ssh.stream`` says; with ``auto`` the relay takes over from
the first refusal to forward, for the life of the transport.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import re
import shlex
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import anyio
import asyncssh
from anyio.abc import ByteStream

from hpcgate.accounts import Account, UserEntry
from hpcgate.config import SshConfig
from hpcgate.model.commands import Command, CommandResult, FileCommand
from hpcgate.model.errors import (
    BadRequest,
    CommandTimeout,
    ForwardingProhibited,
    TransportError,
)
from hpcgate.transports.filesystem import FileSystem
from hpcgate.transports.ssh_commands import ForcedFileSystem
from hpcgate.transports.ssh_errors import connection_error, translated
from hpcgate.transports.ssh_files import SftpFileSystem
from hpcgate.transports.ssh_identity import Identity, identity_for
from hpcgate.transports.ssh_names import Names
from hpcgate.transports.ssh_openssh import OpenSsh
from hpcgate.transports.ssh_pool import ConnectionPool
from hpcgate.transports.ssh_relay import open_relay
from hpcgate.transports.ssh_sftp import FILE_TIMEOUT, Bulk
from hpcgate.transports.ssh_stream import open_stream

log = logging.getLogger("hpcgate.ssh")

T = TypeVar("T")
Process = asyncssh.SSHClientProcess[bytes]

REMOTE_GRACE = 5  # seconds the host-side timeout waits past the gateway's own
KILL_WAIT = 5.0  # seconds to wait for a killed command's channel to close
MIN_WINDOW = 1 << 16  # the least SSH window of a ranged read's channel
# AES-GCM first (then asyncssh's defaults): with AES instructions it costs the gateway's one
# event loop a third less CPU per byte than ChaCha20-Poly1305, which asyncssh assembles from
# several OpenSSL calls a packet (bench/bench_files.py, files over SFTP).
CIPHERS = "^aes256-gcm@openssh.com,aes128-gcm@openssh.com"
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def command_line(command: Command, timeout: float | None = None) -> str:
    """The string sent to sshd: the argv quoted for a POSIX login shell, preceded by
    ``env -- NAME=VALUE...`` for its variables and, with ``timeout``, by a host-side
    ``timeout -s KILL`` of that many seconds (rounded up)."""
    argv = command.argv
    if command.env:
        for name in command.env:
            if not ENV_NAME.match(name):
                raise BadRequest(f"invalid environment variable name {name!r}")
        argv = ("env", "--", *(f"{name}={value}" for name, value in command.env.items()), *argv)
    if timeout is not None:
        argv = ("timeout", "-s", "KILL", str(math.ceil(timeout)), *argv)
    return shlex.join(argv)


class SshTransport:
    """Runs argv lists on ``config.host`` over SSH, as the caller's account."""

    def __init__(self, system: str, config: SshConfig, identity: Identity | None = None) -> None:
        self._system = system
        self._config = config
        self._forced = config.identity == "forced"
        self._identity = identity or identity_for(config, system)
        self.where = f"{config.host}:{config.port}"
        self._names = Names()
        self._home: str | None = None
        self.pool = self._pool(forwarding=False)
        self.tunnels = self._pool(forwarding=True)  # for streams: see ssh_stream
        self.relays = config.stream == "relay"  # streams go through hpcgate-forced's relay
        self._openssh = OpenSsh(config, self._identity)
        uses_openssh = config.bulk == "openssh" or (config.bulk == "auto" and not config.jump_host)
        self.bulk: Bulk | None = self._openssh.sftp if uses_openssh else None

    def _pool(self, forwarding: bool) -> ConnectionPool:
        config = self._config
        return ConnectionPool(
            functools.partial(self._connect, forwarding=forwarding),
            max_connections=config.max_connections,
            sessions=config.sessions_per_connection,
            idle_seconds=config.idle_seconds,
            wait_seconds=config.connect_timeout,
        )

    async def start(self) -> None:
        """Read the identity's keys (the CA key), so a bad one stops the gateway's start."""
        self._identity.start()
        self._find_openssh()
        if self._forced:
            log.warning(
                "system %s: every user's commands and jobs run as the one account %s on %s"
                " (identity = 'forced'): the cluster does not keep users apart",
                self._system,
                self._config.user,
                self.where,
            )

    def _find_openssh(self) -> None:
        """Whether long transfers go over OpenSSH's client (``ssh.bulk``): with ``auto``,
        if it is installed; with ``openssh``, a missing client stops the start."""
        try:
            if self.bulk is not None:
                log.info("system %s: long transfers over %s", self._system, self._openssh.find())
        except TransportError:
            if self._config.bulk == "openssh":
                raise
            self.bulk = None

    def login(self, account: Account | None) -> str:
        """The account a command logs in as: the caller's, or the configured ``user``
        (always, with identity ``forced``)."""
        return self._config.user if account is None or self._forced else account.name

    async def lookup_user(self, name: str) -> UserEntry | None:
        """The user ``name`` in the login node's database (``getent passwd``, run in the
        gateway's own login)."""
        return await self._names.user(self, name)

    async def own_home(self) -> str:
        """The home directory of ``user``, the gateway's own login, on the host (asked
        once)."""
        if self._home is None:
            entry = await self.lookup_user(self._config.user)
            if entry is None:
                raise TransportError(f"{self.where} has no user {self._config.user!r} (ssh.user)")
            self._home = entry.home
        return self._home

    def files(self, account: Account | None = None) -> FileSystem:
        """The files over SFTP (:mod:`.ssh_files`), as the caller's login; for a functional
        account with reads, sizes and directories as commands (:mod:`.ssh_commands`)."""
        if self._forced:
            return ForcedFileSystem(self, account, self._names)
        return SftpFileSystem(self, account, self._names)

    async def stream(self, host: str, port: int, account: Account | None = None) -> ByteStream:
        """A connection to ``host``:``port`` through the login node: a ``direct-tcpip``
        channel (:mod:`.ssh_stream`) or hpcgate-forced's relay (:mod:`.ssh_relay`)."""
        login = self.login(account)
        if self.relays:
            return await self._relay(login, host, port)
        try:
            return await open_stream(self.tunnels, self.where, login, host, port)
        except ForwardingProhibited:
            if not (self._forced and self._config.stream == "auto"):
                raise
        log.warning(
            "system %s: %s does not let %s forward: streams go through hpcgate-forced's relay",
            self._system,
            self.where,
            login,
        )
        self.relays = True
        return await self._relay(login, host, port)

    async def _relay(self, login: str, host: str, port: int) -> ByteStream:
        """A relay's session, on the connections kept for streams (:mod:`.ssh_relay`)."""
        opener = functools.partial(self._open, io={})
        return await open_relay(self.tunnels, self.where, login, host, port, opener)

    async def close(self) -> None:
        await self.pool.close()
        await self.tunnels.close()

    async def run(
        self, command: Command, timeout: float, account: Account | None = None
    ) -> CommandResult:
        line = command_line(command, timeout + REMOTE_GRACE)
        stdin: dict[str, Any] = (
            {"input": command.stdin} if command.stdin else {"stdin": asyncssh.DEVNULL}
        )
        login = self.login(account)
        async with self._process(login, line, stdin, wait=timeout) as process:
            late = f"'{command.argv[0]}' did not finish in {timeout:g} s; it was killed"
            work = process.communicate()
            stdout, stderr = await self._finish(process, work, login, timeout, late)
            return self._result(process, command, stdout, stderr)

    async def run_long(
        self, command: Command, account: Account | None, on_line: Callable[[str], None]
    ) -> CommandResult:
        """No timeout; each stderr line to ``on_line``; killed on the host if cancelled."""
        io = {"stdin": asyncssh.DEVNULL, "stdout": asyncssh.DEVNULL}
        login = self.login(account)
        async with self._process(login, command_line(command), io) as process:
            lines = await self._finish(process, _lines(process, on_line), login)
            tail = "\n".join(lines[-20:]).encode()
            return self._result(process, command, b"", tail)

    async def run_files(
        self, command: FileCommand, account: Account | None, on_line: Callable[[str], None]
    ) -> CommandResult:
        """The program with its paths as names: neither SSH nor SFTP can hand a remote
        program a directory that was opened and checked (the program resolves each path
        again, as the account, on the host)."""
        return await self.run_long(command.plain(), account, on_line)

    async def run_file_command(self, command: Command, limit: int | None = None) -> CommandResult:
        """Run a file operation's command as the functional account, its stdout cut at
        ``limit`` bytes (it is killed once it has written them). Being idempotent, it is
        tried once more when the connection breaks under it."""
        login = self._config.user
        line = command_line(command, FILE_TIMEOUT + REMOTE_GRACE)
        io: dict[str, Any] = {"stdin": asyncssh.DEVNULL}
        if limit is not None:
            io["window"] = max(limit, MIN_WINDOW)  # sshd reads no more ahead than this
        late = f"a file operation on {self.where} took more than {FILE_TIMEOUT:g} s"
        broken = TransportError(f"the connection to {self.where} broke during a file operation")
        for _attempt in (1, 2):
            async with self._process(login, line, io) as process:
                try:
                    work = _collect(process, limit)
                    result = await self._finish(process, work, login, FILE_TIMEOUT, late)
                except TransportError as exc:
                    broken, result = exc, None
            if result is not None:
                return result
        raise broken

    # ------------------------------------------------------------------ internals

    async def _finish(
        self,
        process: Process,
        work: Awaitable[T],
        login: str,
        timeout: float | None = None,
        late: str = "",
    ) -> T:
        """``work`` on a started process, within ``timeout`` seconds (None: no limit; then
        CommandTimeout saying ``late``). If it fails or is cancelled, the process is killed
        on the host; errors of SSH become hpcgate errors."""
        try:
            async with asyncio.timeout(timeout):
                with translated(self.where, login):
                    return await work
        except TimeoutError:
            await _kill(process)
            raise CommandTimeout(late) from None
        except BaseException:
            await _kill(process)
            raise

    @contextlib.asynccontextmanager
    async def _process(
        self, login: str, line: str, io: dict[str, Any], wait: float | None = None
    ) -> AsyncIterator[Process]:
        """A started remote process, its channel closed when the block ends; a free channel
        is waited for at most ``wait`` seconds (default ``connect_timeout``). When its
        channel could not be opened on a connection that had died, it is tried once more on
        a fresh connection: the host never saw the command."""
        for attempt in (1, 2):
            async with self.pool.lease(login, wait=wait) as lease:
                try:
                    process = await self._open(lease.conn, line, io)
                except asyncssh.ChannelOpenError as exc:
                    if not lease.conn.is_closed() or attempt == 2:
                        raise connection_error(exc, self.where, login) from exc
                    lease.broken()
                    continue
                except (asyncssh.Error, OSError) as exc:  # may have started: not retried
                    lease.broken()
                    raise connection_error(exc, self.where, login) from exc
                try:
                    yield process
                finally:
                    process.close()
                return

    async def _open(
        self, conn: asyncssh.SSHClientConnection, line: str, io: dict[str, Any]
    ) -> Process:
        """Open a channel and start ``line`` in it. A live connection's refusal is tried
        again, for up to ``connect_timeout``: sshd frees a closed channel's session a moment
        after the close, so a new channel can briefly exceed its MaxSessions."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._config.connect_timeout
        delay = 0.01
        while True:
            try:
                async with asyncio.timeout(self._config.connect_timeout):
                    return await conn.create_process(line, encoding=None, **io)
            except asyncssh.ChannelOpenError:
                if conn.is_closed() or loop.time() + delay > deadline:
                    raise
            await asyncio.sleep(delay)
            delay = min(2 * delay, 0.25)

    def _result(
        self, process: Process, command: Command, stdout: bytes, stderr: bytes
    ) -> CommandResult:
        if process.returncode is None:
            raise TransportError(
                f"the connection to {self.where} broke while '{command.argv[0]}' ran;"
                " it may have run"
            )
        return CommandResult(process.returncode, stdout, stderr)

    async def _connect(self, login: str, forwarding: bool) -> asyncssh.SSHClientConnection:
        """A new connection as ``login`` (through the jump host if one is configured),
        with the right to open streams onward if ``forwarding``."""
        config = self._config
        jump: asyncssh.SSHClientConnection | None = None
        try:
            async with asyncio.timeout(config.connect_timeout):
                if config.jump_host is not None:
                    jump_user, host, port = parse_jump_host(config.jump_host)
                    jump = await self._login(host, port, jump_user or login, None, True)
                conn = await self._login(config.host, config.port, login, jump, forwarding)
        except BaseException as exc:
            if jump is not None:
                jump.close()
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise connection_error(exc, self.where, login) from exc
        if jump is not None:
            conn.set_tunnel(jump)  # closing the connection closes the jump host's too
        return conn

    async def _login(
        self,
        host: str,
        port: int,
        login: str,
        tunnel: asyncssh.SSHClientConnection | None,
        forwarding: bool,
    ) -> asyncssh.SSHClientConnection:
        config = self._config
        return await asyncssh.connect(
            host,
            port,
            tunnel=tunnel if tunnel is not None else (),
            username=login,
            known_hosts=str(config.known_hosts),
            client_keys=self._identity.client_keys(login, forwarding),
            agent_path=None,
            config=None,  # no ~/.ssh/config of the gateway's account
            preferred_auth="publickey",
            keepalive_interval=config.keepalive_seconds,
            connect_timeout=config.connect_timeout,
            login_timeout=config.connect_timeout,
            encryption_algs=CIPHERS,
        )


def parse_jump_host(text: str) -> tuple[str | None, str, int]:
    """``[user@]host[:port]`` (host may be ``[v6 address]``) as (user, host, port)."""
    user, _, rest = text.rpartition("@")
    if rest.startswith("["):
        host, _, tail = rest[1:].partition("]")
        port = tail.removeprefix(":")
    else:
        host, _, port = rest.partition(":")
    return user or None, host, int(port or 22)


async def _lines(process: Process, on_line: Callable[[str], None]) -> list[str]:
    """Every line the process writes to stderr, each also handed to ``on_line``, until it
    has ended."""
    seen: list[str] = []
    while raw := await process.stderr.readline():
        line = raw.decode(errors="replace").rstrip("\n")
        on_line(line)
        seen = [*seen[-50:], line]
    await process.wait_closed()
    return seen


async def _collect(process: Process, limit: int | None) -> CommandResult | None:
    """What the process writes (stdout up to ``limit`` bytes: then it is killed, its work
    done) and its exit status; None if its channel closed without one (connection lost)."""
    stdout = bytearray()
    while limit is None or len(stdout) < limit:
        chunk = await process.stdout.read(-1 if limit is None else limit - len(stdout))
        if not chunk:
            break
        stdout += chunk
    if limit is not None and len(stdout) >= limit:
        await _kill(process)
        return CommandResult(0, bytes(stdout), b"")
    stderr = await process.stderr.read()
    await process.wait_closed()
    if process.returncode is None:
        return None
    return CommandResult(process.returncode, bytes(stdout), stderr)


async def _kill(process: Process) -> None:
    """SIGKILL the command's process group on the host, close its channel, and wait a
    little for the close (shielded: this runs while a cancellation is under way)."""
    with contextlib.suppress(OSError):
        process.send_signal("KILL")
    process.close()
    with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
        await asyncio.wait_for(process.wait_closed(), KILL_WAIT)
