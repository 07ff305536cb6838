"""Opening a path beneath a root directory, never outside it, whatever its symlinks say.

The local file system's operations (:mod:`.local_ops`) find every file from an open
descriptor of its root, never by a path string the kernel resolves again later: a client
that swaps a directory for a symlink between a check and a use then meets the swap, not
another file. Two ways to get there, the same answer:

- ``openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)`` (Linux >= 5.6), called through
  ``ctypes`` as Python has no binding; it refuses (``EXDEV``) any step that leaves the root,
  and also every absolute symlink, even one that points within the root;
- a walk, one component at a time, each opened with ``O_NOFOLLOW`` under its parent's
  descriptor; a symlink met on the way is read and followed only while it stays beneath the
  root (an absolute one must name the root, as configured or as its real path). The walk
  serves where openat2 is missing or forbidden (``ENOSYS``, ``EPERM`` from seccomp: probed
  once) and where it refused an absolute link.

Only the standard library: the per-account file helper imports this.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import platform
import posixpath
import stat
import struct
from collections.abc import Iterator

SYS_OPENAT2 = 437  # the same number on x86_64 and aarch64
RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_BENEATH = 0x08
MAX_LINKS = 40  # the kernel's own limit on symlinks in one lookup
DIRECTORY = os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC
_HOW = struct.Struct("=QQQ")  # struct open_how: flags, mode, resolve


class _Probe:
    """Whether openat2 works here (None: not tried yet), or is switched off."""

    works: bool | None = None
    forced_walk = False


def force_walk(on: bool) -> None:
    """Use the component walk even where openat2 works (tests exercise both ways)."""
    _Probe.forced_walk = on


def escape(path: str) -> OSError:
    return PermissionError(errno.EACCES, "it leads outside its file root", path)


def relative(root: str, path: str) -> str:
    """``path`` relative to ``root``, decided on the strings alone ('' for the root)."""
    if path == root:
        return ""
    prefix = root.rstrip("/") + "/"
    if not path.startswith(prefix):
        raise escape(path)
    return path[len(prefix) :].strip("/")


@contextlib.contextmanager
def closing(fd: int) -> Iterator[int]:
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def opened(root: str, path: str, flags: int, follow: bool = True) -> Iterator[int]:
    """A descriptor of ``path`` opened with ``flags`` beneath ``root`` (every symlink
    followed while it stays beneath; the last name too only if ``follow``)."""
    with closing(os.open(root, DIRECTORY)) as top:
        rel = relative(root, path)
        if follow or not rel:
            fd = _open(top, root, rel, flags | os.O_CLOEXEC)
        else:
            folder, name = posixpath.split(rel)
            with closing(_open(top, root, folder, DIRECTORY)) as parent:
                fd = os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)
        with closing(fd):
            yield fd


@contextlib.contextmanager
def parent(root: str, path: str) -> Iterator[tuple[int, str]]:
    """The directory holding ``path``'s last name, opened beneath ``root``, and that name
    (``.`` for the root itself): act on the name with ``dir_fd``, never following it."""
    rel = relative(root, path)
    folder, name = posixpath.split(rel)
    with opened(root, posixpath.join(root, folder) if folder else root, DIRECTORY) as fd:
        yield fd, name or "."


def real_path(root: str, fd: int) -> str:
    """Where an open descriptor beneath ``root`` is, written from the root as configured."""
    with closing(os.open(root, DIRECTORY)) as top:
        real_root = os.readlink(f"/proc/self/fd/{top}")
    found = os.readlink(f"/proc/self/fd/{fd}")
    rel = relative(real_root, found) if found != real_root else ""
    return posixpath.join(root, rel) if rel else root


def _open(top: int, root: str, rel: str, flags: int) -> int:
    """``rel`` opened under the root's descriptor ``top``; the last name followed."""
    if _openat2_usable():
        try:
            return _openat2(top, rel or ".", flags)
        except OSError as exc:
            if exc.errno not in (errno.EXDEV, errno.EAGAIN):
                raise
    return _walk(top, root, rel, flags)


def _openat2_usable() -> bool:
    if _Probe.forced_walk or platform.machine() not in ("x86_64", "aarch64"):
        return False
    if _Probe.works is None:
        try:
            os.close(_openat2(-100, "/", DIRECTORY))  # AT_FDCWD
            _Probe.works = True
        except OSError as exc:
            _Probe.works = exc.errno not in (errno.ENOSYS, errno.EPERM)
    return _Probe.works


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _openat2(dirfd: int, rel: str, flags: int) -> int:
    how = ctypes.create_string_buffer(
        _HOW.pack(flags, 0, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS), _HOW.size
    )
    syscall = _libc().syscall
    syscall.restype = ctypes.c_long
    name = ctypes.c_char_p(os.fsencode(rel))
    call, at, size = ctypes.c_long(SYS_OPENAT2), ctypes.c_long(dirfd), ctypes.c_size_t(_HOW.size)
    fd = int(syscall(call, at, name, how, size))
    if fd < 0:
        number = ctypes.get_errno()
        raise OSError(number, os.strerror(number), rel)
    return fd


def _walk(top: int, root: str, rel: str, flags: int) -> int:
    """The component walk: a stack of open directories, never one above the root."""
    stack = [os.dup(top)]
    todo = [part for part in rel.split("/") if part]
    links = 0
    try:
        while todo:
            name = todo.pop(0)
            if name == ".":
                continue
            if name == "..":
                if len(stack) == 1:
                    raise escape(posixpath.join(root, rel))
                os.close(stack.pop())
                continue
            info = os.stat(name, dir_fd=stack[-1], follow_symlinks=False)
            if stat.S_ISLNK(info.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel)
                todo[:0] = _link_parts(top, root, rel, stack, name)
                continue
            wanted = flags if not todo else DIRECTORY
            stack.append(os.open(name, wanted | os.O_NOFOLLOW, dir_fd=stack[-1]))
        if len(stack) == 1:
            return os.open(".", flags, dir_fd=stack[0])
        fd = stack.pop()
        if stat.S_ISLNK(os.fstat(fd).st_mode):  # swapped for a link since the stat
            os.close(fd)
            raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), rel)
        return fd
    finally:
        for fd in stack:
            os.close(fd)


def _link_parts(top: int, root: str, rel: str, stack: list[int], name: str) -> list[str]:
    """The components a symlink leads to, from where the walk is (an absolute link sends
    the walk back to the root, if it names the root)."""
    target = os.readlink(name, dir_fd=stack[-1])
    if not target.startswith("/"):
        return [part for part in target.split("/") if part]
    with closing(os.open(".", DIRECTORY, dir_fd=top)) as again:
        real_root = os.readlink(f"/proc/self/fd/{again}")
    for base in (root, real_root):
        try:
            inner = relative(base, posixpath.normpath(target))
        except OSError:
            continue
        while len(stack) > 1:
            os.close(stack.pop())
        return [part for part in inner.split("/") if part]
    raise escape(posixpath.join(root, rel))
