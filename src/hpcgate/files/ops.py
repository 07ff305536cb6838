"""File operations on real paths, as plain functions of JSON-able values.

This module runs in two places: in the gateway (single-user mode, in worker threads) and in
the per-account helper process (multi-user mode, as the account). It therefore imports only
the standard library, and reports failures as :class:`OSError` with an ``errno``, which the
caller translates. Paths here are already checked against the system's roots; these
functions never follow a symlink the caller did not resolve first.
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
from typing import Any

ALGORITHMS = ("sha256", "sha512", "sha1", "md5", "blake2b")
READ_CHUNK = 1 << 20
MAX_LIST = 100_000
SNIFF_BYTES = 8192
TAIL_STEP = 65536  # tail reads backwards this much at a time
TAIL_LIMIT = 16 * READ_CHUNK  # and no more than this


def resolve(path: str, follow: bool) -> dict[str, Any]:
    """The real path: every directory in it resolved; the last name too when ``follow``."""
    parent, name = os.path.split(path)
    real = (
        os.path.realpath(path)
        if follow or not name
        else os.path.join(os.path.realpath(parent), name)
    )
    return {"path": real}


def _names(uid: int, gid: int) -> tuple[str | None, str | None]:
    try:
        user: str | None = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = None
    try:
        group: str | None = grp.getgrgid(gid).gr_name
    except KeyError:
        group = None
    return user, group


def kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def shown(text: str) -> str:
    """A name as valid UTF-8: bytes that are not (``\\xff``) are written out escaped."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def entry(path: str, info: os.stat_result, numeric: bool = False) -> dict[str, Any]:
    """What a listing or stat tells of one file (the link itself for a symlink)."""
    user, group = (None, None) if numeric else _names(info.st_uid, info.st_gid)
    target = os.readlink(path) if stat.S_ISLNK(info.st_mode) else None
    return {
        "name": shown(os.path.basename(path) or path),
        "path": shown(path),
        "type": kind(info.st_mode),
        "size": info.st_size,
        "mode": f"{stat.S_IMODE(info.st_mode):04o}",
        "permissions": stat.filemode(info.st_mode),
        "uid": info.st_uid,
        "gid": info.st_gid,
        "user": user,
        "group": group,
        "modified": info.st_mtime,
        "accessed": info.st_atime,
        "changed": info.st_ctime,
        "link_target": None if target is None else shown(target),
    }


def lstat(path: str, numeric: bool = False) -> dict[str, Any]:
    return entry(path, os.lstat(path), numeric)


def listing(path: str, hidden: bool, depth: int, numeric: bool) -> list[dict[str, Any]]:
    """The entries under a directory, ``depth`` levels deep; symlinks are never entered."""
    if not stat.S_ISDIR(os.stat(path).st_mode):
        raise NotADirectoryError(20, "Not a directory", path)
    found: list[dict[str, Any]] = []
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


def mkdir(path: str, parents: bool) -> dict[str, Any]:
    if parents:
        os.makedirs(path, exist_ok=True)
    else:
        os.mkdir(path)
    return lstat(path)


def remove(path: str, recursive: bool) -> dict[str, Any]:
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        os.unlink(path)
    elif recursive:
        shutil.rmtree(path)
    else:
        os.rmdir(path)
    return {"path": path}


def chmod(path: str, mode: str) -> dict[str, Any]:
    os.chmod(path, int(mode, 8), follow_symlinks=True)
    return lstat(path)


def chown(path: str, owner: str | None, group: str | None) -> dict[str, Any]:
    uid = -1 if owner is None else _uid(owner)
    gid = -1 if group is None else _gid(group)
    os.chown(path, uid, gid)
    return lstat(path)


def _uid(owner: str) -> int:
    if owner.isdigit():
        return int(owner)
    try:
        return pwd.getpwnam(owner).pw_uid
    except KeyError:
        raise OSError(22, f"no such user: {owner}") from None


def _gid(group: str) -> int:
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise OSError(22, f"no such group: {group}") from None


def symlink(path: str, target: str) -> dict[str, Any]:
    os.symlink(target, path)
    return lstat(path)


def rename(path: str, target: str, overwrite: bool) -> dict[str, Any]:
    """Move within one filesystem; without ``overwrite`` an existing target is refused."""
    if not overwrite and os.path.lexists(target):
        raise FileExistsError(17, "File exists", target)
    os.rename(path, target)
    return lstat(target)


def checksum(path: str, algorithm: str) -> dict[str, Any]:
    if algorithm not in ALGORITHMS:
        raise OSError(22, f"unknown algorithm {algorithm}; known: {', '.join(ALGORITHMS)}")
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            digest.update(chunk)
    return {"algorithm": algorithm, "checksum": digest.hexdigest()}


def head(path: str, lines: int | None, size: int | None) -> dict[str, Any]:
    """The first ``lines`` lines or ``size`` bytes."""
    with open(path, "rb") as handle:
        if size is not None:
            data = handle.read(size)
        else:
            data = b"".join(_first_lines(handle, lines or 10))
    return content(data)


def _first_lines(handle: Any, count: int) -> Iterator[bytes]:
    for _ in range(count):
        line = handle.readline(READ_CHUNK)
        if not line:
            return
        yield line


def leading_lines(data: bytes, count: int) -> bytes | None:
    """The first ``count`` lines of ``data``; None if it holds fewer whole lines."""
    end = -1
    for _ in range(count):
        end = data.find(b"\n", end + 1)
        if end < 0:
            return None
    return data[: end + 1]


def tail(path: str, lines: int | None, size: int | None) -> dict[str, Any]:
    """The last ``lines`` lines or ``size`` bytes, reading backwards from the end."""
    with open(path, "rb") as handle:
        end = handle.seek(0, os.SEEK_END)
        if size is not None:
            handle.seek(max(0, end - size))
            return content(handle.read())
        return content(_last_lines(handle, end, lines or 10))


def _last_lines(handle: Any, end: int, count: int) -> bytes:
    data, start = b"", end
    while start > 0 and not has_lines(data, count):
        step = min(TAIL_STEP, start)
        start -= step
        handle.seek(start)
        data = handle.read(step) + data
    return last_lines(data, count)


def has_lines(data: bytes, count: int) -> bool:
    """Whether the end of a file, ``data``, holds its last ``count`` whole lines (or as
    much as tail reads at most)."""
    return data.count(b"\n", 0, len(data) - 1) >= count or len(data) > TAIL_LIMIT


def last_lines(data: bytes, count: int) -> bytes:
    """The last ``count`` lines of ``data`` (its final newline kept if it has one)."""
    kept = data.split(b"\n")
    trailing = data.endswith(b"\n")
    body = kept[:-1] if trailing else kept
    return b"\n".join(body[-count:]) + (b"\n" if trailing else b"")


def view(path: str, offset: int, size: int) -> dict[str, Any]:
    with open(path, "rb") as handle:
        handle.seek(offset)
        return content(handle.read(size))


def content(data: bytes) -> dict[str, Any]:
    """What head, tail and view answer: the bytes as text (invalid UTF-8 replaced)."""
    return {"content": data.decode(errors="replace"), "bytes": len(data)}


_SIGNATURES = (
    (b"\x1f\x8b", "application/gzip"),
    (b"BZh", "application/x-bzip2"),
    (b"\xfd7zXZ\x00", "application/x-xz"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x7fELF", "application/x-executable"),
    (b"%PDF-", "application/pdf"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89HDF\r\n\x1a\n", "application/x-hdf5"),
    (b"CDF\x01", "application/x-netcdf"),
)


def file_type(path: str) -> dict[str, Any]:
    """What a file holds, from its first bytes (the kind ``file --mime-type`` reports)."""
    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode):
        return {"type": kind(info.st_mode), "mime_type": None}
    with open(path, "rb") as handle:
        start = handle.read(SNIFF_BYTES)
    return {"type": "file", "mime_type": sniff(start)}


def sniff(start: bytes) -> str:
    """The MIME type of a file that starts with ``start``."""
    if not start:
        return "inode/x-empty"
    for signature, mime in _SIGNATURES:
        if start.startswith(signature):
            return mime
    if start[257:262] == b"ustar":
        return "application/x-tar"
    if b"\x00" in start:
        return "application/octet-stream"
    try:
        start.decode()
    except UnicodeDecodeError as exc:
        if exc.start < len(start) - 4:  # not just a character cut at the sniff boundary
            return "application/octet-stream"
    return "text/plain"


def usage(path: str) -> dict[str, Any]:
    """Bytes and files under ``path`` (symlinks counted, never followed)."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        return {"bytes": info.st_size, "files": 1}
    total, files = 0, 0
    for root, dirs, names in os.walk(path):
        for name in dirs + names:
            total += os.lstat(os.path.join(root, name)).st_size
            files += 1
    return {"bytes": total, "files": files}


def open_read(path: str) -> int:
    """A descriptor to read a regular file; a symlink here is refused, never followed."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError(21, "Not a regular file", path)
    return fd


def open_new(path: str) -> int:
    """A descriptor to a file created here, refused if anything exists at ``path``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    return os.open(path, flags, 0o600)


def open_append(path: str) -> int:
    """A descriptor to append to an existing regular file (a resumed upload)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise IsADirectoryError(21, "Not a regular file", path)
    return fd


def publish(path: str, target: str, overwrite: bool, mode: int) -> dict[str, Any]:
    """Give a finished upload (``path``) its final name in one step: never a half-written
    file at ``target``."""
    os.chmod(path, mode)
    if overwrite:
        os.replace(path, target)
    else:
        os.link(path, target)  # fails if the name exists, unlike rename
        os.unlink(path)
    return lstat(target)


def discard(path: str) -> dict[str, Any]:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    return {"path": path}


def size_of(path: str) -> dict[str, Any]:
    return {"size": os.lstat(path).st_size}


OPERATIONS: dict[str, Callable[..., dict[str, Any] | list[dict[str, Any]]]] = {
    function.__name__: function
    for function in (
        resolve,
        lstat,
        listing,
        mkdir,
        remove,
        chmod,
        chown,
        symlink,
        rename,
        checksum,
        head,
        tail,
        view,
        file_type,
        usage,
        publish,
        discard,
        size_of,
    )
}
OPENERS: dict[str, Callable[[str], int]] = {
    function.__name__: function for function in (open_read, open_new, open_append)
}
