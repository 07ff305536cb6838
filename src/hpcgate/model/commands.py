"""A command to run on a system and its result: the currency between adapters and transports."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Command:
    """An argv to execute (never a shell string), with optional bytes for its stdin.

    ``env`` is None for the transport's own environment; otherwise the command runs with a
    clean base environment (PATH, HOME, USER, LANG...) plus these variables, so nothing of
    the gateway's environment (which may hold secrets) reaches it.
    """

    argv: tuple[str, ...]
    stdin: bytes | None = None
    env: Mapping[str, str] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """What a finished command returned."""

    returncode: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def error_text(self) -> str:
        """The command's own complaint, trimmed, for an error detail."""
        text = self.stderr.decode(errors="replace").strip() or self.stdout.decode(errors="replace")
        return text.strip()[:2000] or f"exit status {self.returncode}"
