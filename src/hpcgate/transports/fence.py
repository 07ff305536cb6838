"""A file program's fence: the kernel keeps it inside the directories it was given.

``python -I -m hpcgate.transports.fence [--dir FD]... [--file FD]... -- PROGRAM ARG...``
restricts itself with Landlock (Linux >= 5.19 for the rights it needs, ABI 2: moving
between directories) and then ``exec``s the program, which inherits the restriction and
can never lift it: it may read, write, make and remove only beneath the directories
``--dir`` and write the files ``--file`` (descriptors opened beneath a file root and passed
to it, :mod:`.anchored`), and otherwise only read and run the system's programs and
libraries. So ``cp -R`` copying a tree in which a client swaps a directory for a symlink
mid-walk meets a refusal where the link leads out, not the file there.

Where Landlock is missing (an older kernel, or not enabled) the program runs without the
fence, confined by its descriptors alone. Only the standard library: it runs as the
account, before the program, and imports nothing else of hpcgate.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import struct
import sys
from collections.abc import Sequence

CREATE_RULESET, ADD_RULE, RESTRICT_SELF = 444, 445, 446  # the same on every architecture
RULE_PATH_BENEATH = 1
ABI_VERSION = 1  # landlock_create_ruleset's flag: ask for the ABI version
NO_NEW_PRIVS = 38  # prctl
EXECUTE, WRITE_FILE, READ_FILE, READ_DIR = 1, 2, 4, 8
REFER, TRUNCATE = 1 << 13, 1 << 14
#: The rights each ABI knows (ABI 2 adds moving between directories, 3 truncating).
KNOWN = {2: (1 << 14) - 1, 3: (1 << 15) - 1}
SYSTEM_DIRS = ("/usr", "/lib", "/lib64", "/bin", "/sbin")
#: What the programs read of /etc: the loader's cache, and names for a tar header.
SYSTEM_FILES = ("/etc/ld.so.cache", "/etc/passwd", "/etc/group", "/etc/nsswitch.conf")
_RULE = struct.Struct("=Qi")  # struct landlock_path_beneath_attr (packed)


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _call(number: int, *args: object) -> int:
    syscall = _libc().syscall
    syscall.restype = ctypes.c_long
    found = int(syscall(ctypes.c_long(number), *args))
    if found < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return found


def abi() -> int:
    """The Landlock ABI version of this kernel (0: none)."""
    try:
        return _call(CREATE_RULESET, None, ctypes.c_size_t(0), ctypes.c_uint32(ABI_VERSION))
    except OSError:
        return 0


def _add(ruleset: int, fd: int, rights: int) -> None:
    rule = ctypes.create_string_buffer(_RULE.pack(rights, fd), _RULE.size)
    _call(
        ADD_RULE, ctypes.c_int(ruleset), ctypes.c_int(RULE_PATH_BENEATH), rule, ctypes.c_uint32(0)
    )


def _add_path(ruleset: int, path: str, rights: int) -> None:
    try:
        fd = os.open(path, os.O_PATH | os.O_CLOEXEC)
    except OSError:
        return  # not on this system (/lib64 on aarch64)
    try:
        _add(ruleset, fd, rights)
    finally:
        os.close(fd)


def restrict(dirs: Sequence[int], files: Sequence[int]) -> bool:
    """Fence this process (and what it runs) in; False where Landlock cannot."""
    version = min(abi(), max(KNOWN))
    if version < min(KNOWN):
        return False
    handled = KNOWN[version]
    attr = ctypes.create_string_buffer(struct.pack("=Q", handled), 8)
    ruleset = _call(CREATE_RULESET, attr, ctypes.c_size_t(8), ctypes.c_uint32(0))
    try:
        for fd in dirs:
            _add(ruleset, fd, handled)
        for fd in files:
            _add(ruleset, fd, (READ_FILE | WRITE_FILE | TRUNCATE) & handled)
        for path in SYSTEM_DIRS:
            _add_path(ruleset, path, EXECUTE | READ_FILE | READ_DIR)
        for path in SYSTEM_FILES:
            _add_path(ruleset, path, READ_FILE)
        _call_prctl()
        _call(RESTRICT_SELF, ctypes.c_int(ruleset), ctypes.c_uint32(0))
    finally:
        os.close(ruleset)
    return True


def _call_prctl() -> None:
    """No new privileges: Landlock's condition for an unprivileged process."""
    prctl = _libc().prctl
    if prctl(NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno() or errno.EPERM, "prctl(PR_SET_NO_NEW_PRIVS) failed")


def parse(args: Sequence[str]) -> tuple[list[int], list[int], list[str]]:
    """The directory and file descriptors, and the program's argv."""
    dirs: list[int] = []
    files: list[int] = []
    rest = list(args)
    while rest and rest[0] != "--":
        option = rest.pop(0)
        if option not in ("--dir", "--file") or not rest or not rest[0].isdigit():
            raise SystemExit(f"hpcgate fence: bad arguments near {option!r}")
        (dirs if option == "--dir" else files).append(int(rest.pop(0)))
    if len(rest) < 2:
        raise SystemExit("hpcgate fence: no program after --")
    return dirs, files, rest[1:]


def main() -> None:
    dirs, files, argv = parse(sys.argv[1:])
    try:
        restrict(dirs, files)
    except OSError as exc:
        raise SystemExit(f"hpcgate fence: cannot restrict: {exc.strerror}") from None
    os.execvp(argv[0], argv)  # noqa: S606 - the gateway's argv, no shell


if __name__ == "__main__":
    main()
