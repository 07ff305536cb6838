"""A file program's path arguments, confined for a child process on this machine.

Each :class:`~hpcgate.model.commands.Beneath` argument becomes a name under
``/proc/self/fd/N``, where N is a descriptor opened beneath the argument's root (as the
account, by its file helper) and passed to the child. The kernel follows that link to the
very directory or file that was opened, whatever has been renamed or swapped since, so
the only name the program resolves itself is the last one, inside a directory already
confined. Below that name the programs are held to follow no symlink: ``cp -P``,
``mv -T`` (a rename, which never follows the names it moves), ``tar`` without ``-h``
(which walks a tree by descriptors, opening each name with ``O_NOFOLLOW``); and, where the
kernel has Landlock, the program runs behind a :mod:`.fence` that lets it touch nothing
outside those directories (but the system's programs, to read and run), so not even a
directory swapped for a symlink while ``cp -R`` walks the tree leads it out.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import sys
from collections.abc import AsyncIterator, Callable

from hpcgate.model.commands import Beneath, FileCommand
from hpcgate.transports.local_files import LocalFileSystem

Confined = Callable[[str], LocalFileSystem]  # the account's file system beneath a root


@contextlib.asynccontextmanager
async def anchored(
    command: FileCommand, confined: Confined
) -> AsyncIterator[tuple[tuple[str, ...], tuple[int, ...]]]:
    """The argv to run (the program behind its :mod:`.fence`) and the descriptors to pass
    it, open while the context lasts."""
    opened: dict[int, str] = {}  # descriptor: the fence's option for it
    try:
        words = [await _word(word, confined, opened) for word in command.argv]
        yield (*_fence(opened), *words), tuple(opened)
    finally:
        for fd in opened:
            os.close(fd)


def _fence(opened: dict[int, str]) -> tuple[str, ...]:
    """The fence's argv, up to the program's (none if no path was confined)."""
    if not opened:
        return ()
    options = [word for fd, option in opened.items() for word in (option, str(fd))]
    return (sys.executable, "-I", "-m", "hpcgate.transports.fence", *options, "--")


async def _word(word: str | Beneath, confined: Confined, opened: dict[int, str]) -> str:
    if isinstance(word, str):
        return word
    if word.root is None:
        return word.plain()
    if word.part == "name":
        return word.prefix + last_name(word)
    files = confined(word.root)
    if word.part == "file":
        fd = await files.open_target(word.path)
        opened[fd] = "--file"
    else:
        fd = await files.open_parent(word.path)
        opened[fd] = "--dir"
    through = f"/proc/self/fd/{fd}"
    return word.prefix + (f"{through}/{last_name(word)}" if word.part == "path" else through)


def last_name(word: Beneath) -> str:
    """The name the program resolves in the directory opened for ``word`` (the root's
    own directory, for the root: ``.``)."""
    return "." if word.path == word.root else posixpath.basename(word.path)
