"""The transport seam: how the gateway acts on a system. Transports only execute: they
run argv lists, move bytes and open streams; they never parse scheduler output and never
know HTTP.

A transport is these few capabilities, each a protocol here, and nothing else:

- :class:`Commands`: run an argv to completion, or for as long as it takes;
- :class:`FileSystems`: the system's files as an account (:mod:`.filesystem` is that
  contract, one method per operation);
- :class:`Streams`: a byte stream to a host and port on the cluster (for services);
- :class:`~hpcgate.accounts.UserDirectory`: the system's users, to map callers to accounts;
- :class:`Lifecycle`: read what it needs before the first request, release it at the end.

Wherever ``account`` is None the transport acts as the gateway's own account on the
system; otherwise as that account, with its permissions, never the gateway's. Existing
transports: :mod:`.local` (this machine) and :mod:`.ssh` (a login node over SSH).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from anyio.abc import ByteStream

from hpcgate.accounts import Account, UserDirectory
from hpcgate.model.commands import Command, CommandResult, FileCommand
from hpcgate.transports.filesystem import FileSystem


class Commands(Protocol):
    async def run(
        self, command: Command, timeout: float, account: Account | None = None
    ) -> CommandResult:
        """Run to completion, killed after ``timeout`` seconds (CommandTimeout); a command
        that could not be started or whose system broke away is a TransportError."""
        ...

    async def run_long(
        self, command: Command, account: Account | None, on_line: Callable[[str], None]
    ) -> CommandResult:
        """Run with no timeout (a copy, an archive), each stderr line to ``on_line`` as it
        comes; killed, with all it started, when the caller is cancelled."""
        ...

    async def run_files(
        self, command: FileCommand, account: Account | None, on_line: Callable[[str], None]
    ) -> CommandResult:
        """Run a file program as :meth:`run_long` does, each path argument confined to its
        root where the transport can: opened beneath the root as ``account`` before the
        program starts, so the only name the program resolves is a last one inside a
        directory already confined (a path the system cannot confine goes as its name)."""
        ...


class FileSystems(Protocol):
    def files(self, account: Account | None = None) -> FileSystem:
        """The system's files as ``account`` sees them. Making one does no I/O."""
        ...


class Streams(Protocol):
    async def stream(self, host: str, port: int, account: Account | None = None) -> ByteStream:
        """A TCP connection to ``host``:``port`` as the cluster reaches it, opened as
        ``account`` where the transport can tell who opens it; the caller closes it.
        TransportError if it cannot be opened."""
        ...


class Lifecycle(Protocol):
    async def start(self) -> None:
        """Read what the transport needs before the first request (keys); no connecting."""
        ...

    async def close(self) -> None:
        """Release what the transport holds (helper processes, connections)."""
        ...


class Transport(Commands, FileSystems, Streams, UserDirectory, Lifecycle, Protocol):
    """Everything the gateway does on one system."""
