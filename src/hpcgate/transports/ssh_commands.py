"""Job files as commands, for a functional account behind hpcgate-forced.

sshd runs an account's forced command for the ``sftp`` subsystem too, and a site may turn
hpcgate-forced's SFTP off (``--no-sftp``; the files API then fails). So that jobs work
either way, with identity = 'forced' the SSH transport's file system
(:class:`ForcedFileSystem`) reads files, sizes them and makes directories by running
coreutils programs that hpcgate-forced allows, none of which writes a file:

- ``tail -c +N -- PATH``: the file from byte N-1 on (the transport stops reading, and kills
  it, once it has the bytes it wants);
- ``stat -L -c %s -- PATH``: the size;
- ``mkdir [-p] -- PATH``: a directory (and its parents).

Each runs with ``LC_ALL=C``, so the reason on its stderr reads the same on every host;
:func:`~hpcgate.transports.ssh_errors.failure` turns that reason (a strerror text) into
the hpcgate error, by the same table as the local file helpers' errno numbers. Everything
else goes over SFTP, as for any login.
"""

from __future__ import annotations

from typing import Protocol

from hpcgate.accounts import Account
from hpcgate.model.commands import Command, CommandResult
from hpcgate.model.errors import NotFound, TransportError
from hpcgate.transports.ssh_errors import C_LOCALE, failure
from hpcgate.transports.ssh_files import Host, SftpFileSystem
from hpcgate.transports.ssh_names import Names


def read_command(path: str, offset: int) -> Command:
    """Everything in ``path`` from byte ``offset`` on."""
    return Command(("tail", "-c", f"+{offset + 1}", "--", path), env=C_LOCALE)


def size_command(path: str) -> Command:
    """The size of ``path`` (of what a symbolic link points to), in bytes."""
    return Command(("stat", "-L", "-c", "%s", "--", path), env=C_LOCALE)


def mkdir_command(path: str, parents: bool = True) -> Command:
    """Make ``path`` (and, with ``parents``, its parents; then fine if it is there)."""
    return Command(("mkdir", *(("-p",) if parents else ()), "--", path), env=C_LOCALE)


def parse_size(result: CommandResult, path: str) -> int:
    """The size ``stat`` printed; raises the error its failure means."""
    if not result.ok:
        raise failure(result, "stat", path)
    try:
        return int(result.stdout)
    except ValueError:
        raise TransportError(f"stat printed no size for {path}: {result.stdout[:80]!r}") from None


class CommandHost(Host, Protocol):
    """The SSH transport, which also runs a functional account's file commands."""

    async def run_file_command(self, command: Command, limit: int | None = None) -> CommandResult:
        """The command's result, its stdout cut at ``limit`` bytes."""
        ...


class ForcedFileSystem(SftpFileSystem):
    """The SFTP file system of a functional account, but for reads, sizes and directories:
    those are commands, so jobs work where hpcgate-forced turns SFTP off."""

    def __init__(self, host: CommandHost, account: Account | None, names: Names) -> None:
        super().__init__(host, account, names)
        self._commands = host

    async def read(self, path: str, offset: int, size: int) -> bytes:
        result = await self._commands.run_file_command(read_command(path, offset), limit=size)
        if not result.ok:
            raise failure(result, "tail", path)
        return result.stdout

    async def size(self, path: str) -> int | None:
        try:
            return parse_size(await self._commands.run_file_command(size_command(path)), path)
        except NotFound:
            return None

    async def mkdir(self, path: str, parents: bool) -> None:
        result = await self._commands.run_file_command(mkdir_command(path, parents))
        if not result.ok:
            raise failure(result, "mkdir", path)
