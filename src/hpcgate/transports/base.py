"""The transport seam: run argv and move bytes on a system. Transports never parse
scheduler output and never know HTTP."""

from __future__ import annotations

from typing import Protocol

from hpcgate.commands import Command, CommandResult


class Transport(Protocol):
    """Executes commands and reads files on one system."""

    async def run(self, command: Command, timeout: float) -> CommandResult:
        """Run to completion; raises CommandTimeout or TransportError."""
        ...

    async def read(self, path: str, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of a file from ``offset``; raises NotFound if absent."""
        ...

    async def file_size(self, path: str) -> int | None:
        """The size of a file, or None if it does not exist."""
        ...

    async def make_directory(self, path: str) -> None:
        """Create a directory and its parents; fine if it exists."""
        ...
