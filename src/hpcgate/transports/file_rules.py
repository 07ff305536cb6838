"""What every file system reports the same way, whichever transport reads the file: the
kind of a file from its mode, its MIME type from its first bytes, a name as valid UTF-8,
the first and last lines of some bytes, and the limits on listings and reads.

Pure functions of the standard library only: the local file helper process imports this
module (it must start fast), and so do the SFTP file system and the files service.
"""

from __future__ import annotations

import errno
import posixpath
import stat
from typing import Any, Literal

Kind = Literal["file", "directory", "symlink", "other"]
ALGORITHMS = ("sha256", "sha512", "sha1", "md5", "blake2b")  # what checksum() supports
MAX_LIST = 100_000  # entries in one listing, at most
SNIFF_BYTES = 8192  # what file_type() reads of a file
TAIL_STEP = 65536  # tail reads backwards this much at a time
TAIL_LIMIT = 16 << 20  # and no more than this


def kind(mode: int) -> Kind:
    """``file``, ``directory``, ``symlink`` or ``other``, from a ``st_mode``."""
    if stat.S_ISLNK(mode):
        return "symlink"
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    return "other"


def special(mode: int) -> str:
    """What a file that is neither regular, a directory nor a symlink is, in words."""
    for test, name in (
        (stat.S_ISFIFO, "a FIFO"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISLNK, "a symlink"),
    ):
        if test(mode):
            return name
    return "a special file"


def irregular(mode: int) -> tuple[int, str] | None:
    """Why a file of ``mode`` may not be read as a regular file (its errno and message),
    or None if it may: the files API reads only regular files, as a FIFO or a device could
    block a reader forever."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return errno.EISDIR, "Is a directory"
    return errno.EINVAL, f"{special(mode)}, not a regular file"


def shown(text: str) -> str:
    """A name as valid UTF-8: bytes that are not (``\\xff``) are written out escaped."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def entry(
    path: str,
    mode: int,
    size: int,
    ids: tuple[int, int],
    names: tuple[str | None, str | None],
    times: tuple[float, float, float | None],
    target: str | None,
) -> dict[str, Any]:
    """What a listing or stat tells of one file (the fields of
    :class:`hpcgate.model.files.FileEntry`): ``ids`` and ``names`` are its owner's and
    group's, ``times`` its modification, access and change times (None where unknown),
    ``target`` where a symlink points."""
    return {
        "name": shown(posixpath.basename(path) or path),
        "path": shown(path),
        "type": kind(mode),
        "size": size,
        "mode": f"{stat.S_IMODE(mode):04o}",
        "permissions": stat.filemode(mode),
        "uid": ids[0],
        "gid": ids[1],
        "user": names[0],
        "group": names[1],
        "modified": times[0],
        "accessed": times[1],
        "changed": times[2],
        "link_target": None if target is None else shown(target),
    }


def content(data: bytes) -> dict[str, Any]:
    """What head, tail and view answer: the bytes as text (invalid UTF-8 replaced)."""
    return {"content": data.decode(errors="replace"), "bytes": len(data)}


def leading_lines(data: bytes, count: int) -> bytes | None:
    """The first ``count`` lines of ``data``; None if it holds fewer whole lines."""
    end = -1
    for _ in range(count):
        end = data.find(b"\n", end + 1)
        if end < 0:
            return None
    return data[: end + 1]


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


def sniff(start: bytes) -> str:
    """The MIME type of a file that starts with ``start`` (what ``file --mime-type``
    reports for the kinds an HPC user meets)."""
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
