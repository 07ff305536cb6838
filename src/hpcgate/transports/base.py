"""The transport seam: run argv and move bytes on a system. Transports never parse
scheduler output and never know HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from hpcgate.accounts import Account, UserDirectory
from hpcgate.model.commands import Command, CommandResult
from hpcgate.transports.files import FileAccess


class Transport(UserDirectory, Protocol):
    """Executes commands and reads files on one system, as ``account`` when one is given
    (multi-user mode) or as the gateway's own account (None). It is also the system's user
    database (:class:`~hpcgate.accounts.UserDirectory`)."""

    async def run(
        self, command: Command, timeout: float, account: Account | None = None
    ) -> CommandResult:
        """Run to completion; raises CommandTimeout or TransportError."""
        ...

    async def run_long(
        self, command: Command, account: Account | None, on_line: Callable[[str], None]
    ) -> CommandResult:
        """Run with no timeout, stderr lines to ``on_line``; killed when cancelled."""
        ...

    async def read(
        self, path: str, offset: int, size: int, account: Account | None = None
    ) -> bytes:
        """Up to ``size`` bytes of a file from ``offset``; raises NotFound if absent."""
        ...

    async def file_size(self, path: str, account: Account | None = None) -> int | None:
        """The size of a file, or None if it does not exist."""
        ...

    async def make_directory(self, path: str, account: Account | None = None) -> None:
        """Create a directory and its parents; fine if it exists."""
        ...

    async def start(self) -> None:
        """Read what the transport needs before the first command (keys); no connecting."""
        ...

    def files(self, account: Account | None = None) -> FileAccess:
        """File operations and open descriptors, as ``account`` or as the gateway."""
        ...

    async def close(self) -> None:
        """Release what the transport holds (helper processes, connections)."""
        ...
