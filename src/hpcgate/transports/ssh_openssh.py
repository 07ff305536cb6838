"""SFTP carried by OpenSSH's own client: ``ssh -s HOST sftp`` runs as a subprocess of the
gateway, and asyncssh's SFTP client speaks SFTP over its standard input and output.

Why: on a bulk transfer the gateway's one event loop otherwise does the SSH layer in
Python, a packet of at most 32 KiB at a time (what OpenSSH's sshd sends), while scp
leaves it to ``ssh``, in C, on another core. Here ``ssh`` encrypts the packets and the
gateway handles one SFTP message per request of up to 255 KiB (bench/RESULTS.md).

What the subprocess is given, and nothing else:

- an argv list (never a shell) that asks for the ``sftp`` subsystem: no remote command
  line at all, so no user string reaches a shell on either side; the host after ``--``;
- ``-F none``: no user or system ssh_config; every option it needs on the command line:
  batch mode, only the identity given, no agent, no forwarding of any kind, no
  multiplexing, no local command, no proxy, and ``StrictHostKeyChecking=yes`` against a
  copy of the transport's own ``known_hosts`` (the file the asyncssh connections check);
- the key (and certificate) the transport logs in with, written to a fresh 0700 folder as
  0600 files, removed as soon as the SFTP session has started (the login is done then)
  and in any case when the session ends; an environment of ``PATH`` and ``LC_ALL`` only;
- AES-GCM first among the ciphers (with AES instructions cheaper than ChaCha20-Poly1305,
  OpenSSH's default), if the host's sshd takes it.

The process is killed and reaped when the session ends, fails or is cancelled. asyncssh
has no public way to start its SFTP client on streams of one's own: this module builds its
``SFTPClientHandler`` on adapters of the pipes (the same few calls its own
``start_sftp_client`` makes), which a change of asyncssh's internals could break; the
tests in tests/ssh/test_ssh_openssh.py run it against a real sshd.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import shutil
import signal
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
from asyncssh.logging import logger as ssh_logger
from asyncssh.sftp import SFTPClientHandler

from hpcgate.config import SshConfig
from hpcgate.model.errors import TransportError
from hpcgate.transports.ssh_identity import ClientKey, Identity

Sftp = asyncssh.SFTPClient
Process = asyncio.subprocess.Process

CIPHERS = "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com"
PIPE_SIZE = 1 << 20  # fewer wake-ups per MiB than the pipes' default 64 KiB
READ_LIMIT = 1 << 20  # what the pipe's reader buffers before it stops reading
ERROR_BYTES = 2000  # of ssh's standard error, told in an error
EXIT_WAIT = 2.0  # seconds a closed session's ssh has to exit before it is killed
SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")  # a login, as OpenSSH takes it
SAFE_HOST = re.compile(r"^(?:[A-Za-z0-9_][A-Za-z0-9_.-]{0,252}|[0-9A-Fa-f:.]{2,45})$")
SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./-]+$")  # no space (a list), % or ~ (ssh expands)
OPTIONS = (
    "BatchMode=yes",
    "IdentitiesOnly=yes",
    "IdentityAgent=none",
    "GlobalKnownHostsFile=none",
    "StrictHostKeyChecking=yes",
    "UpdateHostKeys=no",
    "CheckHostIP=no",
    "ClearAllForwardings=yes",
    "ForwardAgent=no",
    "ForwardX11=no",
    "ForwardX11Trusted=no",
    "Tunnel=no",
    "ControlMaster=no",
    "ControlPath=none",
    "PermitLocalCommand=no",
    "ProxyCommand=none",
    "ProxyJump=none",
    "RequestTTY=no",
    "Compression=no",
    "LogLevel=ERROR",
    f"Ciphers={CIPHERS}",
)


def ssh_argv(
    program: str,
    folder: Path,
    host: str,
    port: int,
    login: str,
    timeout: float,
    keepalive: float = 15.0,
) -> list[str]:
    """The argv of an ``ssh`` that opens the ``sftp`` subsystem on ``host`` as ``login``,
    with only what ``folder`` holds (``id``, ``id-cert.pub``, ``known_hosts``); it gives up
    after ``timeout`` seconds to log in, or three unanswered keepalives."""
    if not SAFE_HOST.match(host) or not SAFE_NAME.match(login):
        raise TransportError(f"OpenSSH is not used for {login!r} on {host!r}: unusual name")
    if not SAFE_PATH.match(str(folder)):
        raise TransportError(f"OpenSSH is not used with key files in {str(folder)!r}")
    if not 1 <= port <= 65535:
        raise TransportError(f"invalid port {port}")
    options = [
        *OPTIONS,
        f"UserKnownHostsFile={folder / 'known_hosts'}",
        f"IdentityFile={folder / 'id'}",
        f"ConnectTimeout={max(1, round(timeout))}",
        f"ServerAliveInterval={max(1, round(keepalive))}",
        "ServerAliveCountMax=3",
    ]
    flags = [word for option in options for word in ("-o", option)]
    return [program, "-F", "none", *flags, "-p", str(port), "-l", login, "-s", "--", host, "sftp"]


def private_files(folder: Path, key: ClientKey, known_hosts: Path) -> None:
    """``key`` (and its certificate) and a copy of ``known_hosts`` in ``folder``, 0600."""
    private, certificate = key if isinstance(key, tuple) else (key, None)
    _write(folder / "id", private.export_private_key("openssh"))
    if certificate is not None:
        _write(folder / "id-cert.pub", certificate.export_certificate("openssh"))
    try:
        _write(folder / "known_hosts", known_hosts.read_bytes())
    except OSError as exc:
        raise TransportError(f"known_hosts ({known_hosts}) cannot be read: {exc.strerror}") from exc


def _write(path: Path, data: bytes) -> None:
    """A new file of the owner's alone (never through a link, never one that exists)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


class OpenSsh:
    """Starts SFTP sessions carried by OpenSSH's ``ssh`` for the logins of one host."""

    def __init__(self, config: SshConfig, identity: Identity) -> None:
        self._config = config
        self._identity = identity
        self._program: str | None = None

    def find(self) -> str:
        """The ``ssh`` program on ``PATH`` (looked for once it is found)."""
        if self._program is None:
            self._program = shutil.which("ssh")
            if self._program is None:
                raise TransportError("OpenSSH's client, ssh, is not installed (ssh.bulk)")
        return self._program

    @contextlib.asynccontextmanager
    async def sftp(self, login: str) -> AsyncIterator[Sftp]:
        """An SFTP client logged in as ``login``; the process is ended when the block ends."""
        config = self._config
        folder = Path(tempfile.mkdtemp(prefix="hpcgate-ssh-"))  # 0700, the gateway's own
        try:
            argv = ssh_argv(
                self.find(),
                folder,
                config.host,
                config.port,
                login,
                config.connect_timeout,
                config.keepalive_seconds,
            )
            private_files(folder, self._identity.client_keys(login)[0], config.known_hosts)
            async with _session(argv, folder, config.connect_timeout) as sftp:
                shutil.rmtree(folder, ignore_errors=True)  # logged in: the key is not needed
                yield sftp
        finally:
            shutil.rmtree(folder, ignore_errors=True)


@contextlib.asynccontextmanager
async def _session(argv: list[str], folder: Path, timeout: float) -> AsyncIterator[Sftp]:
    """The SFTP client on ``argv``'s process; the process ended (killed if need be)."""
    error_fd = os.open(folder / "errors", os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        process, stdout = await _spawn(argv, error_fd)
        receiving: asyncio.Task[None] | None = None
        try:
            sftp, receiving = await _started(process, stdout, timeout, error_fd)
            yield sftp
        finally:
            await _end(process)
            if receiving is not None:
                receiving.cancel()
    finally:
        os.close(error_fd)


async def _spawn(argv: list[str], error_fd: int) -> tuple[Process, asyncio.StreamReader]:
    """``argv`` started on a pipe for its input and one of :data:`PIPE_SIZE` for its output."""
    out, child_out = os.pipe()
    try:
        _widen(out)
        process = await asyncio.create_subprocess_exec(
            *argv,
            stdin=subprocess.PIPE,
            stdout=child_out,
            stderr=error_fd,
            env={"PATH": os.defpath, "LC_ALL": "C"},
            start_new_session=True,  # its own process group, killed as one
        )
    except OSError as exc:
        os.close(out)
        raise TransportError(f"ssh cannot be started: {exc.strerror}") from exc
    finally:
        os.close(child_out)
    assert process.stdin is not None
    _widen(process.stdin.transport.get_extra_info("pipe").fileno())
    return process, await _reader(out)


async def _reader(fd: int) -> asyncio.StreamReader:
    """A stream reading the pipe ``fd`` (which it then owns)."""
    reader = asyncio.StreamReader(limit=READ_LIMIT)
    protocol = asyncio.StreamReaderProtocol(reader)
    pipe = os.fdopen(fd, "rb", buffering=0)  # wraps the descriptor: opens nothing
    await asyncio.get_running_loop().connect_read_pipe(lambda: protocol, pipe)
    return reader


def _widen(fd: int) -> None:
    """The pipe ``fd`` at :data:`PIPE_SIZE` where Linux allows it (else as it is)."""
    setting = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setting is not None:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, setting, PIPE_SIZE)


async def _started(
    process: Process, stdout: asyncio.StreamReader, timeout: float, error_fd: int
) -> tuple[Sftp, asyncio.Task[None]]:
    """The SFTP client once the server has answered its version (so the login is done)."""
    reader: Any = _PipeReader(stdout)
    writer: Any = _PipeWriter(process)
    handler = SFTPClientHandler(asyncio.get_running_loop(), "strict", reader, writer, 3)
    try:
        async with asyncio.timeout(timeout + 5):
            await handler.start()
            receiving = asyncio.ensure_future(handler.recv_packets())
            await handler.request_limits()
    except (asyncssh.Error, OSError, EOFError, TimeoutError) as exc:
        told = _told(error_fd) or str(exc) or type(exc).__name__
        raise TransportError(f"ssh could not start SFTP: {told}") from None
    return asyncssh.SFTPClient(handler, "utf-8", "strict"), receiving


def _told(error_fd: int) -> str:
    """What ssh said on its standard error (the start of it), on one line."""
    try:
        said = os.pread(error_fd, ERROR_BYTES, 0)
    except OSError:
        return ""
    return said.decode("utf-8", "replace").strip().replace("\n", "; ")


async def _end(process: Process) -> None:
    """Close ssh's input; kill it unless it exits at once; reap it, even when cancelled."""
    assert process.stdin is not None
    process.stdin.close()
    try:
        await asyncio.shield(asyncio.wait_for(process.wait(), EXIT_WAIT))
    except TimeoutError:
        pass
    except asyncio.CancelledError:
        _kill(process)
        raise
    _kill(process)
    await asyncio.shield(process.wait())


def _kill(process: Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


class _PipeChannel:
    """What asyncssh's SFTP handler asks of a channel: whether it closes, and its end."""

    def __init__(self, process: Process) -> None:
        self._process = process

    def is_closing(self) -> bool:
        stdin = self._process.stdin
        return stdin is None or stdin.is_closing()

    async def wait_closed(self) -> None:
        await self._process.wait()


class _PipeReader:
    """ssh's standard output, as asyncssh's SFTP handler reads an SSH channel."""

    logger = ssh_logger

    def __init__(self, stdout: asyncio.StreamReader) -> None:
        self._stdout = stdout

    async def readexactly(self, size: int) -> bytes:
        return await self._stdout.readexactly(size)  # a short read is an EOFError

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default  # no server_version: the handler assumes a standard SFTP server


class _PipeWriter:
    """ssh's standard input, as asyncssh's SFTP handler writes to an SSH channel."""

    def __init__(self, process: Process) -> None:
        assert process.stdin is not None
        self._stdin = process.stdin
        self.channel = _PipeChannel(process)

    def write(self, data: bytes) -> None:
        self._stdin.write(data)  # buffered; SftpFile keeps at most 16 requests in flight

    def write_eof(self) -> None:
        self._stdin.close()

    def close(self) -> None:
        self._stdin.close()
