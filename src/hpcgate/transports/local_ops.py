"""The local file system's operations on real paths, as plain functions of JSON-able
values.

Each function finds its file from an open descriptor of ``root`` (:mod:`.beneath`), never
outside it, and acts on that descriptor or on a name under its parent's (``dir_fd``),
never on a path the kernel resolves again. This module belongs to the local transport
(:mod:`.local_files`), which runs these functions in two places: in the gateway
(single-user mode, in worker threads) and in the per-account helper process (multi-user
mode, as the account: :mod:`.fshelper`, which finds them by name in :data:`OPERATIONS`).
It therefore imports only the standard library, and reports failures as :class:`OSError`
with an ``errno``, which the caller translates. Paths are absolute and lexically inside
``root`` (``/`` where jobs read by unchecked paths).
"""

from __future__ import annotations

import contextlib
import errno
import grp
import hashlib
import os
import posixpath
import pwd
import shutil
import stat
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

from hpcgate.transports import beneath, file_rules
from hpcgate.transports.file_rules import (
    ALGORITHMS,
    MAX_LIST,
    SNIFF_BYTES,
    TAIL_STEP,
    content,
    sniff,
)

Entry = dict[str, Any]  # the fields of a FileEntry (file_rules.entry)
READ_CHUNK = 1 << 20
READ_SECONDS = 900.0  # the longest one request may read a file (a checksum)
READ_FILE = os.O_RDONLY | os.O_NONBLOCK  # a FIFO or a device never blocks the open
READ_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK


def resolve(path: str, follow: bool, root: str = "/") -> str:
    """The real path beneath ``root``, written from the root as configured: every directory
    in it resolved; the last name too when ``follow``. Names that do not exist yet are kept
    as they are."""
    if path == root:
        return root
    folder, name = posixpath.split(path)
    if not follow:
        return posixpath.join(resolve(folder, True, root), name)
    try:
        with beneath.opened(root, path, os.O_PATH) as fd:
            return beneath.real_path(root, fd)
    except FileNotFoundError:
        return posixpath.join(resolve(folder, True, root), name)


def _name(lookup: Callable[[int], Any], number: int) -> str | None:
    """A passwd or group entry's name (field 0 of both) by id; None if there is none."""
    try:
        return str(lookup(number)[0])
    except KeyError:
        return None


def entry(path: str, info: os.stat_result, numeric: bool, link: str | None) -> Entry:
    """What a listing or stat tells of one file (the link itself for a symlink, which
    points to ``link``)."""
    user = None if numeric else _name(pwd.getpwuid, info.st_uid)
    group = None if numeric else _name(grp.getgrgid, info.st_gid)
    return file_rules.entry(
        path,
        info.st_mode,
        info.st_size,
        (info.st_uid, info.st_gid),
        (user, group),
        (info.st_mtime, info.st_atime, info.st_ctime),
        link,
    )


def _entry_at(fd: int, name: str, path: str, numeric: bool = False) -> Entry:
    """The entry of ``name`` in the directory ``fd`` (a symlink's own)."""
    info = os.stat(name, dir_fd=fd, follow_symlinks=False)
    link = os.readlink(name, dir_fd=fd) if stat.S_ISLNK(info.st_mode) else None
    return entry(path, info, numeric, link)


def lstat(path: str, numeric: bool = False, root: str = "/") -> Entry:
    with beneath.parent(root, path) as (fd, name):
        return _entry_at(fd, name, path, numeric)


def listing(path: str, hidden: bool, depth: int, numeric: bool, root: str = "/") -> list[Entry]:
    """The entries under a directory, ``depth`` levels deep; symlinks are never entered."""
    found: list[Entry] = []
    with beneath.opened(root, path, READ_DIRECTORY) as fd:
        for child, info, link in _walk(fd, path, hidden, depth):
            found.append(entry(child, info, numeric, link))
            if len(found) >= MAX_LIST:
                raise OSError(27, f"more than {MAX_LIST} entries; list a smaller tree", path)
    return found


def _walk(
    fd: int, path: str, hidden: bool, depth: int
) -> Iterator[tuple[str, os.stat_result, str | None]]:
    """Each child's path, details and link target; directories entered by descriptor."""
    with os.scandir(fd) as children:
        ordered = sorted(children, key=lambda child: child.name)
    for child in ordered:
        if not hidden and child.name.startswith("."):
            continue
        info = child.stat(follow_symlinks=False)
        link = os.readlink(child.name, dir_fd=fd) if stat.S_ISLNK(info.st_mode) else None
        shown = posixpath.join(path, child.name)
        yield shown, info, link
        if depth > 1 and stat.S_ISDIR(info.st_mode):
            flags = READ_DIRECTORY | os.O_NOFOLLOW
            with beneath.closing(os.open(child.name, flags, dir_fd=fd)) as inner:
                yield from _walk(inner, shown, hidden, depth - 1)


def mkdir(path: str, parents: bool, root: str = "/") -> None:
    if not parents:
        with beneath.parent(root, path) as (fd, name):
            os.mkdir(name, dir_fd=fd)
        return
    parts = beneath.relative(root, path).split("/") if path != root else []
    for count in range(1, len(parts) + 1):
        prefix = posixpath.join(root, *parts[:count])
        with beneath.parent(root, prefix) as (fd, name), contextlib.suppress(FileExistsError):
            os.mkdir(name, dir_fd=fd)
    with beneath.opened(root, path, beneath.DIRECTORY):
        pass  # what is there is a directory (or a link beneath the root to one)


def remove(path: str, recursive: bool, root: str = "/") -> None:
    with beneath.parent(root, path) as (fd, name):
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISDIR(info.st_mode):
            os.unlink(name, dir_fd=fd)
        elif recursive:
            shutil.rmtree(name, dir_fd=fd)
        else:
            os.rmdir(name, dir_fd=fd)


def _through(fd: int) -> str:
    """The name of an open descriptor's own file, to change it where Python has no
    ``f*`` call that takes an ``O_PATH`` descriptor."""
    return f"/proc/self/fd/{fd}"


def chmod(path: str, mode: int, root: str = "/") -> Entry:
    with beneath.opened(root, path, os.O_PATH) as fd:
        os.chmod(_through(fd), mode)
        return entry(path, os.fstat(fd), False, None)


def chown(path: str, owner: str | None, group: str | None, root: str = "/") -> Entry:
    uid = -1 if owner is None else _number(pwd.getpwnam, owner, "user")
    gid = -1 if group is None else _number(grp.getgrnam, group, "group")
    with beneath.opened(root, path, os.O_PATH) as fd:
        os.chown(_through(fd), uid, gid)
        return entry(path, os.fstat(fd), False, None)


def _number(lookup: Callable[[str], Any], name: str, what: str) -> int:
    """The id (field 2 of a passwd and of a group entry) of a user or group name; digits
    are taken as the id itself."""
    if name.isdigit():
        return int(name)
    try:
        return int(lookup(name)[2])
    except KeyError:
        raise OSError(22, f"no such {what}: {name}") from None


def symlink(path: str, target: str, root: str = "/") -> Entry:
    with beneath.parent(root, path) as (fd, name):
        os.symlink(target, name, dir_fd=fd)
        return _entry_at(fd, name, path)


def regular(fd: int) -> int:
    """``fd`` if it is a regular file's; a directory or a special file is refused, by
    its type (a FIFO or a device could block a reader forever)."""
    refused = file_rules.irregular(os.fstat(fd).st_mode)
    if refused is not None:
        raise OSError(*refused)
    return fd


@contextlib.contextmanager
def _reading(root: str, path: str, follow: bool = True) -> Iterator[IO[bytes]]:
    """A regular file beneath ``root`` open to read, never blocking on what it is."""
    with (
        beneath.opened(root, path, READ_FILE, follow) as fd,
        open(regular(fd), "rb", closefd=False) as handle,
    ):
        yield handle


def checksum(path: str, algorithm: str, root: str = "/") -> str:
    """The hex digest of the file's bytes, as many as it held when opened, read within
    :data:`READ_SECONDS`."""
    if algorithm not in ALGORITHMS:
        raise OSError(22, f"unknown algorithm {algorithm}; known: {', '.join(ALGORITHMS)}")
    digest = hashlib.new(algorithm)
    deadline = time.monotonic() + READ_SECONDS
    with _reading(root, path) as handle:
        left = os.fstat(handle.fileno()).st_size
        while left > 0 and (chunk := handle.read(min(READ_CHUNK, left))):
            digest.update(chunk)
            left -= len(chunk)
            if time.monotonic() > deadline:
                raise TimeoutError(errno.ETIMEDOUT, f"not read in {READ_SECONDS:.0f} s")
    return digest.hexdigest()


def head(path: str, lines: int | None, size: int | None, root: str = "/") -> dict[str, Any]:
    """The first ``lines`` lines or ``size`` bytes."""
    with _reading(root, path) as handle:
        if size is not None:
            return content(handle.read(size))
        return content(b"".join(_first_lines(handle, lines or 10)))


def _first_lines(handle: IO[bytes], count: int) -> Iterator[bytes]:
    for _ in range(count):
        line = handle.readline(READ_CHUNK)
        if not line:
            return
        yield line


def tail(path: str, lines: int | None, size: int | None, root: str = "/") -> dict[str, Any]:
    """The last ``lines`` lines or ``size`` bytes, reading backwards from the end."""
    with _reading(root, path) as handle:
        end = handle.seek(0, os.SEEK_END)
        if size is not None:
            handle.seek(max(0, end - size))
            return content(handle.read(min(size, end)))
        return content(_last_lines(handle, end, lines or 10))


def _last_lines(handle: IO[bytes], end: int, count: int) -> bytes:
    data, start = b"", end
    while start > 0 and not file_rules.has_lines(data, count):
        step = min(TAIL_STEP, start)
        start -= step
        handle.seek(start)
        data = handle.read(step) + data
    return file_rules.last_lines(data, count)


def file_type(path: str, root: str = "/") -> dict[str, Any]:
    """What a file holds, from its first bytes (the kind ``file --mime-type`` reports)."""
    with beneath.parent(root, path) as (fd, name):
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            return {"type": file_rules.kind(info.st_mode), "mime_type": None}
        flags = READ_FILE | os.O_NOFOLLOW | os.O_CLOEXEC
        with beneath.closing(os.open(name, flags, dir_fd=fd)) as opened:
            start = os.read(regular(opened), SNIFF_BYTES)
    return {"type": "file", "mime_type": sniff(start)}


def usage(path: str, root: str = "/") -> int:
    """Bytes under ``path`` (symlinks counted, never followed)."""
    with beneath.parent(root, path) as (fd, name):
        info = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISDIR(info.st_mode):
            return info.st_size
        total = 0
        for _, dirs, names, inner in os.fwalk(name, dir_fd=fd):
            for child in dirs + names:
                total += os.stat(child, dir_fd=inner, follow_symlinks=False).st_size
    return total


def size(path: str, root: str = "/") -> int:
    """The size of the file at ``path`` (of what a symlink there points to)."""
    with beneath.opened(root, path, os.O_PATH) as fd:
        return os.fstat(fd).st_size


def open_read(path: str, root: str = "/") -> int:
    """A descriptor to read a regular file; a symlink here is refused, never followed."""
    with beneath.opened(root, path, READ_FILE, follow=False) as fd:
        return os.dup(regular(fd))


def open_new(path: str, root: str = "/") -> int:
    """A descriptor to a file created here, refused if anything exists at ``path``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with beneath.parent(root, path) as (fd, name):
        return os.open(name, flags, 0o600, dir_fd=fd)


def open_append(path: str, root: str = "/") -> int:
    """A descriptor to append to an existing regular file (a resumed upload)."""
    flags = os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    with beneath.parent(root, path) as (fd, name):
        opened = os.open(name, flags, dir_fd=fd)
    try:
        return regular(opened)
    except BaseException:
        os.close(opened)
        raise


def open_parent(path: str, root: str = "/") -> int:
    """An ``O_PATH`` descriptor of the directory holding ``path``'s last name (of the
    root itself, for the root), for a program to reach that name through it."""
    with beneath.parent(root, path) as (fd, _):
        return os.dup(fd)


def open_target(path: str, root: str = "/") -> int:
    """An ``O_PATH`` descriptor of the existing regular file at ``path`` (a symlink there
    is refused, not followed), for a program to write it through the descriptor."""
    flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
    with beneath.parent(root, path) as (fd, name):
        opened = os.open(name, flags, dir_fd=fd)
    if not stat.S_ISREG(os.fstat(opened).st_mode):
        os.close(opened)
        raise OSError(errno.EINVAL, "it is no regular file", path)
    return opened


def publish(path: str, target: str, overwrite: bool, mode: int, root: str = "/") -> Entry:
    """Give a finished upload (``path``) its final name in one step: never a half-written
    file at ``target``, and a symlink there is replaced, never written through."""
    with beneath.parent(root, path) as (here, name), beneath.parent(root, target) as (to, final):
        flags = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC
        with beneath.closing(os.open(name, flags, dir_fd=here)) as fd:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "the finished file is no regular file", path)
            os.chmod(_through(fd), mode)
        if overwrite:
            os.replace(name, final, src_dir_fd=here, dst_dir_fd=to)
        else:  # link fails if the name exists, unlike rename
            os.link(name, final, src_dir_fd=here, dst_dir_fd=to, follow_symlinks=False)
            os.unlink(name, dir_fd=here)
        return _entry_at(to, final, target)


def discard(path: str, root: str = "/") -> None:
    with contextlib.suppress(FileNotFoundError), beneath.parent(root, path) as (fd, name):
        os.unlink(name, dir_fd=fd)


OPERATIONS: dict[str, Callable[..., Any]] = {
    function.__name__: function
    for function in (
        resolve, lstat, listing, mkdir, remove, chmod, chown, symlink, checksum, head, tail,
        file_type, usage, size, publish, discard,
    )
}  # fmt: skip
OPENERS: dict[str, Callable[[str, str], int]] = {
    function.__name__: function
    for function in (open_read, open_new, open_append, open_parent, open_target)
}
