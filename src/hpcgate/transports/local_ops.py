"""The local file system's operations on real paths, as plain functions of JSON-able
values.

This module belongs to the local transport (:mod:`.local_files`), which runs these
functions in two places: in the gateway (single-user mode, in worker threads) and in the
per-account helper process (multi-user mode, as the account: :mod:`.fshelper`, which finds
them by name in :data:`OPERATIONS`). It therefore imports only the standard library, and
reports failures as :class:`OSError` with an ``errno``, which the caller translates. Paths
here are already checked against the system's roots; these functions never follow a
symlink the caller did not resolve first.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import pwd
import shutil
import stat
from collections.abc import Callable, Iterator
from typing import IO, Any

from hpcgate.transports import file_rules
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


def resolve(path: str, follow: bool) -> str:
    """The real path: every directory in it resolved; the last name too when ``follow``."""
    parent, name = os.path.split(path)
    if follow or not name:
        return os.path.realpath(path)
    return os.path.join(os.path.realpath(parent), name)


def _name(lookup: Callable[[int], Any], number: int) -> str | None:
    """A passwd or group entry's name (field 0 of both) by id; None if there is none."""
    try:
        return str(lookup(number)[0])
    except KeyError:
        return None


def entry(path: str, info: os.stat_result, numeric: bool = False) -> Entry:
    """What a listing or stat tells of one file (the link itself for a symlink)."""
    user = None if numeric else _name(pwd.getpwuid, info.st_uid)
    group = None if numeric else _name(grp.getgrgid, info.st_gid)
    return file_rules.entry(
        path,
        info.st_mode,
        info.st_size,
        (info.st_uid, info.st_gid),
        (user, group),
        (info.st_mtime, info.st_atime, info.st_ctime),
        os.readlink(path) if stat.S_ISLNK(info.st_mode) else None,
    )


def lstat(path: str, numeric: bool = False) -> Entry:
    return entry(path, os.lstat(path), numeric)


def listing(path: str, hidden: bool, depth: int, numeric: bool) -> list[Entry]:
    """The entries under a directory, ``depth`` levels deep; symlinks are never entered."""
    if not stat.S_ISDIR(os.stat(path).st_mode):
        raise NotADirectoryError(20, "Not a directory", path)
    found: list[Entry] = []
    for child in _walk(path, hidden, depth):
        found.append(entry(child.path, child.stat(follow_symlinks=False), numeric))
        if len(found) >= MAX_LIST:
            raise OSError(27, f"more than {MAX_LIST} entries; list a smaller tree", path)
    return found


def _walk(path: str, hidden: bool, depth: int) -> Iterator[os.DirEntry[str]]:
    with os.scandir(path) as children:
        ordered = sorted(children, key=lambda child: child.name)
    for child in ordered:
        if not hidden and child.name.startswith("."):
            continue
        yield child
        if depth > 1 and child.is_dir(follow_symlinks=False):
            yield from _walk(child.path, hidden, depth - 1)


def mkdir(path: str, parents: bool) -> None:
    if parents:
        os.makedirs(path, exist_ok=True)
    else:
        os.mkdir(path)


def remove(path: str, recursive: bool) -> None:
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)
    elif recursive:
        shutil.rmtree(path)
    else:
        os.rmdir(path)


def chmod(path: str, mode: int) -> Entry:
    os.chmod(path, mode, follow_symlinks=True)
    return lstat(path)


def chown(path: str, owner: str | None, group: str | None) -> Entry:
    uid = -1 if owner is None else _number(pwd.getpwnam, owner, "user")
    gid = -1 if group is None else _number(grp.getgrnam, group, "group")
    os.chown(path, uid, gid)
    return lstat(path)


def _number(lookup: Callable[[str], Any], name: str, what: str) -> int:
    """The id (field 2 of a passwd and of a group entry) of a user or group name; digits
    are taken as the id itself."""
    if name.isdigit():
        return int(name)
    try:
        return int(lookup(name)[2])
    except KeyError:
        raise OSError(22, f"no such {what}: {name}") from None


def symlink(path: str, target: str) -> Entry:
    os.symlink(target, path)
    return lstat(path)


def checksum(path: str, algorithm: str) -> str:
    """The hex digest of the file's bytes."""
    if algorithm not in ALGORITHMS:
        raise OSError(22, f"unknown algorithm {algorithm}; known: {', '.join(ALGORITHMS)}")
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def head(path: str, lines: int | None, size: int | None) -> dict[str, Any]:
    """The first ``lines`` lines or ``size`` bytes."""
    with open(path, "rb") as handle:
        if size is not None:
            return content(handle.read(size))
        return content(b"".join(_first_lines(handle, lines or 10)))


def _first_lines(handle: IO[bytes], count: int) -> Iterator[bytes]:
    for _ in range(count):
        line = handle.readline(READ_CHUNK)
        if not line:
            return
        yield line


def tail(path: str, lines: int | None, size: int | None) -> dict[str, Any]:
    """The last ``lines`` lines or ``size`` bytes, reading backwards from the end."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        if size is not None:
            handle.seek(max(0, end - size))
            return content(handle.read())
        return content(_last_lines(handle, end, lines or 10))


def _last_lines(handle: IO[bytes], end: int, count: int) -> bytes:
    data, start = b"", end
    while start > 0 and not file_rules.has_lines(data, count):
        step = min(TAIL_STEP, start)
        start -= step
        handle.seek(start)
        data = handle.read(step) + data
    return file_rules.last_lines(data, count)


def file_type(path: str) -> dict[str, Any]:
    """What a file holds, from its first bytes (the kind ``file --mime-type`` reports)."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        return {"type": file_rules.kind(info.st_mode), "mime_type": None}
    with open(path, "rb") as handle:
        start = handle.read(SNIFF_BYTES)
    return {"type": "file", "mime_type": sniff(start)}


def usage(path: str) -> int:
    """Bytes under ``path`` (symlinks counted, never followed)."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return info.st_size
    total = 0
    for root, dirs, names in os.walk(path):
        for name in dirs + names:
            total += os.lstat(os.path.join(root, name)).st_size
    return total


def size(path: str) -> int:
    """The size of the file at ``path`` (of what a symlink there points to)."""
    return os.stat(path).st_size


def open_read(path: str) -> int:
    """A descriptor to read a regular file; a symlink here is refused, never followed."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    return _regular(fd, path)


def open_new(path: str) -> int:
    """A descriptor to a file created here, refused if anything exists at ``path``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, 0o600)


def open_append(path: str) -> int:
    """A descriptor to append to an existing regular file (a resumed upload)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
    return _regular(fd, path)


def _regular(fd: int, path: str) -> int:
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError(21, "Not a regular file", path)
    return fd


def publish(path: str, target: str, overwrite: bool, mode: int) -> Entry:
    """Give a finished upload (``path``) its final name in one step: never a half-written
    file at ``target``."""
    os.chmod(path, mode)
    if overwrite:
        os.replace(path, target)
    else:
        os.link(path, target)  # fails if the name exists, unlike rename
        os.unlink(path)
    return lstat(target)


def discard(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


OPERATIONS: dict[str, Callable[..., Any]] = {
    function.__name__: function
    for function in (
        resolve, lstat, listing, mkdir, remove, chmod, chown, symlink, checksum, head, tail,
        file_type, usage, size, publish, discard,
    )
}  # fmt: skip
OPENERS: dict[str, Callable[[str], int]] = {
    function.__name__: function for function in (open_read, open_new, open_append)
}
