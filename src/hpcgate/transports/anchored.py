"""A file program's path arguments, confined for a child process on this machine.

Each :class:`~hpcgate.model.commands.Beneath` argument becomes a name under
``/proc/self/fd/N``, where N is a descriptor opened beneath the argument's root (as the
account, by its file helper) and passed to the child. The kernel follows that link to the
very directory or file that was opened, whatever has been renamed or swapped since, so
the only name the program resolves itself is the last one, inside a directory already
confined. Below that name the programs are held to follow no symlink: ``cp -P``,
``mv -T`` (a rename, which never follows the names it moves), ``tar`` without ``-h``
(which walks a tree by descriptors, opening each name with ``O_NOFOLLOW``).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import AsyncIterator, Callable

from hpcgate.model.commands import Beneath, FileCommand
from hpcgate.transports.local_files import LocalFileSystem

Confined = Callable[[str], LocalFileSystem]  # the account's file system beneath a root


@contextlib.asynccontextmanager
async def anchored(
    command: FileCommand, confined: Confined
) -> AsyncIterator[tuple[tuple[str, ...], tuple[int, ...]]]:
    """The argv to run and the descriptors to pass it, open while the context lasts."""
    fds: list[int] = []
    try:
        words = [await _word(word, confined, fds) for word in command.argv]
        yield tuple(words), tuple(fds)
    finally:
        for fd in fds:
            os.close(fd)


async def _word(word: str | Beneath, confined: Confined, fds: list[int]) -> str:
    if isinstance(word, str):
        return word
    if word.root is None:
        return word.plain()
    if word.part == "name":
        return word.prefix + last_name(word)
    files = confined(word.root)
    opener = files.open_target if word.part == "file" else files.open_parent
    fds.append(await opener(word.path))
    through = f"/proc/self/fd/{fds[-1]}"
    return word.prefix + (f"{through}/{last_name(word)}" if word.part == "path" else through)


def last_name(word: Beneath) -> str:
    """The name the program resolves in the directory opened for ``word`` (the root's
    own directory, for the root: ``.``)."""
    return "." if word.path == word.root else posixpath.basename(word.path)
