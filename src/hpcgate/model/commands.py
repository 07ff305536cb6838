"""A command to run on a system and its result: the currency between adapters and transports."""

from __future__ import annotations

import posixpath
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal


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


Part = Literal["path", "folder", "name", "file"]


@dataclass(frozen=True, slots=True)
class Beneath:
    """A path argument of a file program (``cp``, ``mv``, ``tar``), checked against the
    file root ``root``, which the transport hands the program as a name it cannot
    resolve outside that root where it can (the local one: through a descriptor it opened
    beneath the root, :meth:`hpcgate.transports.base.Commands.run_files`).

    ``part`` is what of the path the program gets: all of it (``path``), the directory
    holding its last name (``folder``, for ``tar -C``), that last name alone (``name``:
    ``.`` for the root itself), or, for an existing regular file the program writes,
    the file itself (``file``: never a symlink swapped in at that name). ``root`` is None
    where the system cannot confine paths: the program then gets them as names.
    """

    path: str
    root: str | None
    part: Part = "path"
    prefix: str = ""  # written before it in the same word, e.g. ``--file=``

    def plain(self) -> str:
        """The word for a program that resolves the path by its name."""
        if self.part == "folder":
            return self.prefix + posixpath.dirname(self.path)
        if self.part == "name":
            return self.prefix + (posixpath.basename(self.path) or "/")
        return self.prefix + self.path


@dataclass(frozen=True, slots=True)
class FileCommand:
    """A file program's argv, its path arguments as :class:`Beneath`: run with no stdin,
    in a clean environment, as long as it takes (a copy, an archive)."""

    argv: tuple[str | Beneath, ...]

    def plain(self) -> Command:
        """The command with every path as its name."""
        words = (word if isinstance(word, str) else word.plain() for word in self.argv)
        return Command(tuple(words), env={})


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
