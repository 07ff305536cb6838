"""The file-system seam: everything the files API and the jobs do to files on a system, as
one account, and all a transport writes to give it.

A transport's ``files(account)`` returns a :class:`FileSystem`. It is implemented once per
transport: the local one (:mod:`.local_files`) runs its operations in a worker thread as
the gateway, or in a helper process of the account; the SSH one (:mod:`.ssh_files`) sends
SFTP requests, as the account, on its pooled connection. mypy checks each against this
protocol, so one that forgets an operation does not type-check.

What every implementation keeps to:

- **Paths** come absolute and already checked by the files service (:mod:`hpcgate.files`)
  against the caller's roots, after :meth:`FileSystem.resolve` found their real form. An
  implementation never follows a symlink where the method does not say it does, and never
  interprets a path (no shell, no globbing, no ``~``). Confined with
  :meth:`FileSystem.beneath`, the local one resolves each path again from the root's
  descriptor, in the same call that acts on it.
- **Only regular files are read.** A FIFO, a device or a socket is refused (BadRequest,
  naming its type), never opened in a way that could block.
- **As the account.** Everything runs with the account's permissions (the gateway's own
  account when ``account`` is None), checked by the system itself, never by the gateway.
- **Errors** are hpcgate errors, never the library's: NotFound (no such name), Forbidden
  (permission denied, read-only), Conflict (the name is taken, is not a directory, is a
  directory, is not empty), InsufficientStorage (disk or quota full), BadRequest (a name
  or argument the system refuses), TransportError (the system cannot be reached),
  CommandTimeout (it did not answer in time). :mod:`.os_errors` holds the table for errno
  numbers and error texts; a message names the path it was about.
- **Results** are the models of :mod:`hpcgate.model.files` where the API returns them as
  they are (:class:`FileEntry`, :class:`Content`, :class:`Checksum`, :class:`FileType`),
  with the ``path`` they were asked for; plain values otherwise.
- **Contents** are moved through an :class:`OpenFile`, read at offsets or written at its
  end, which the caller closes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hpcgate.model.files import Checksum, Content, FileEntry, FileType
from hpcgate.transports.file_rules import ALGORITHMS

__all__ = ["ALGORITHMS", "FileInfo", "FileSystem", "OpenFile"]


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What identifies an open file's contents (``inode`` is 0 where it is not known)."""

    size: int
    modified_ns: int
    inode: int


class OpenFile(Protocol):
    """A file opened by one of :class:`FileSystem`'s ``open_*`` methods."""

    async def info(self) -> FileInfo:
        """Its size, modification time and inode now."""
        ...

    async def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset`` (fewer only at the end of the file)."""
        ...

    async def read_some(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes from ``offset``, at least one unless the file ends there:
        the next piece the transport has at hand, where :meth:`read` would wait for more
        and join the pieces (a download sends each piece on as it is)."""
        ...

    async def write(self, data: bytes) -> None:
        """Write all of ``data`` at the end of the file."""
        ...

    async def truncate(self, size: int) -> None:
        """Cut the file to ``size`` bytes (writing goes on from there)."""
        ...

    async def chmod(self, mode: int) -> None:
        """Set this open file's permission bits (whatever its name points to by now)."""
        ...

    async def close(self) -> None:
        """Release the file (and whatever the transport holds for it)."""
        ...


class FileSystem(Protocol):
    """The files of one system as one account sees them."""

    def beneath(self, root: str) -> FileSystem:
        """The same files, with every path below confined to ``root`` (a path lexically
        inside it) where the transport can: the local one then finds each file from an open
        descriptor of the root, so no symlink, not even one swapped in mid-request, leads
        out of it. Without this call paths are those of the whole machine."""
        ...

    # ----------------------------------------------------------------- names and details

    async def resolve(self, path: str, follow: bool) -> str:
        """The real path: every symlink among its directories resolved, and the last name
        too when ``follow``. Names that do not exist yet are kept as they are."""
        ...

    async def lstat(self, path: str, numeric: bool = False) -> FileEntry:
        """One file's details (a symlink's own); ``numeric``: no user or group names."""
        ...

    async def listing(self, path: str, hidden: bool, depth: int, numeric: bool) -> list[FileEntry]:
        """The entries under a directory in name order, ``depth`` levels deep, names that
        start with ``.`` only if ``hidden``; symlinks are listed, never entered. Conflict
        if ``path`` is no directory; InsufficientStorage past
        :data:`~.file_rules.MAX_LIST` entries."""
        ...

    async def size(self, path: str) -> int | None:
        """The size of the file at ``path`` (of what a symlink there points to), or None
        if there is none."""
        ...

    async def usage(self, path: str) -> int:
        """The bytes a file or a whole tree holds (symlinks counted, never followed)."""
        ...

    # ----------------------------------------------------------------- contents

    async def read(self, path: str, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes of a regular file from ``offset`` (fewer only at its end).
        Jobs read their output with it, by paths nobody resolved: a final symlink is
        followed or refused, as the transport can, the account's permissions apply
        either way."""
        ...

    async def head(self, path: str, lines: int | None, size: int | None) -> Content:
        """The first ``size`` bytes, else the first ``lines`` lines (10 if neither)."""
        ...

    async def tail(self, path: str, lines: int | None, size: int | None) -> Content:
        """The last ``size`` bytes, else the last ``lines`` lines (10 if neither), reading
        no more than :data:`~.file_rules.TAIL_LIMIT` bytes back from the end."""
        ...

    async def checksum(self, path: str, algorithm: str) -> Checksum:
        """The digest of a file by one of :data:`ALGORITHMS`, made where the file lies."""
        ...

    async def file_type(self, path: str) -> FileType:
        """What the file is (its own kind, a symlink not followed) and, for a regular
        file, its MIME type from its first bytes (:func:`~.file_rules.sniff`)."""
        ...

    async def open_read(self, path: str) -> OpenFile:
        """A regular file opened to read; a symlink is refused (BadRequest), not followed."""
        ...

    async def open_new(self, path: str) -> OpenFile:
        """A new empty file (mode 0600) opened to write; Conflict if the name exists."""
        ...

    async def open_append(self, path: str) -> OpenFile:
        """An existing regular file opened to write at its end (a resumed upload)."""
        ...

    # ----------------------------------------------------------------- changes

    async def mkdir(self, path: str, parents: bool) -> None:
        """Make a directory; with ``parents`` its missing parents too, and a directory
        that exists already is fine."""
        ...

    async def remove(self, path: str, recursive: bool) -> None:
        """Remove a file or a symlink (never what it points to), or a directory: an empty
        one, or with ``recursive`` everything in it."""
        ...

    async def chmod(self, path: str, mode: int) -> FileEntry:
        """Set the permission bits (of what a symlink points to); the entry after."""
        ...

    async def chown(self, path: str, owner: str | None, group: str | None) -> FileEntry:
        """Set the owner or group or both, each a name or a numeric id (None: unchanged);
        BadRequest for a name the system does not know. The entry after."""
        ...

    async def symlink(self, path: str, target: str) -> FileEntry:
        """Make a symlink at ``path`` that points to ``target``; the link's entry."""
        ...

    async def publish(self, path: str, target: str, overwrite: bool, mode: int) -> FileEntry:
        """Give a finished upload at ``path`` the name ``target`` and the permission bits
        ``mode``, in one step: no half-written file ever has that name. Without
        ``overwrite`` an existing ``target`` is a Conflict. The entry at ``target``."""
        ...

    async def discard(self, path: str) -> None:
        """Remove an unfinished upload's file; fine if it is gone already."""
        ...
