"""What an archive member may become when it is extracted: the vetting, with no I/O.

:func:`vet` turns one tar header into a :class:`Member` to make under the extraction
directory, or refuses it with a :class:`~hpcgate.model.errors.BadRequest` naming it:

- names are relative and never climb: no absolute name, no ``..`` component;
- a symbolic link is relative, its ``..`` components all lead its target, and there are no
  more of them than the link's own depth, so it can only point inside the directory
  (its leading ``..`` climb through real directories, which the extraction made; whatever
  it descends through was vetted the same way);
- a hard link names a member extracted before it (the extraction copies that file);
- devices, FIFOs and other special members are refused;
- permission bits keep no setuid, setgid or sticky bit and no group or other write; owners
  are never taken from the archive.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from enum import Enum

from hpcgate.model.errors import BadRequest

KEPT_BITS = 0o755  # no setuid/setgid/sticky (0o7000), no group or other write (0o022)


class Kind(Enum):
    DIRECTORY = "directory"
    FILE = "file"
    SYMLINK = "symbolic link"
    HARDLINK = "hard link"


Parts = tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Member:
    """One vetted member: its name as path components under the extraction directory."""

    name: str  # as the archive spells it, for messages
    parts: Parts
    kind: Kind
    mode: int
    size: int = 0
    link: str = ""  # a symbolic link's target text
    source: Parts = ()  # a hard link's earlier member


def refused(name: str, why: str) -> BadRequest:
    """The error for a member the extraction will not make."""
    return BadRequest(f"archive member {name!r} refused: {why}")


def vet(info: tarfile.TarInfo) -> Member | None:
    """The member to make for ``info``, or None for the extraction directory itself."""
    parts = member_parts(info.name)
    if not parts:
        if info.isdir():
            return None
        raise refused(info.name, "it has no name")
    mode = info.mode & KEPT_BITS
    if info.isdir():
        return Member(info.name, parts, Kind.DIRECTORY, mode)
    if info.isreg():
        return Member(info.name, parts, Kind.FILE, mode, size=info.size)
    if info.issym():
        return Member(info.name, parts, Kind.SYMLINK, mode, link=link_text(info, parts))
    if info.islnk():
        source = member_parts(info.linkname)
        if not source:
            raise refused(info.name, "a hard link to nothing")
        return Member(info.name, parts, Kind.HARDLINK, mode, source=source)
    raise refused(info.name, f"a {special_kind(info)} is never extracted")


def member_parts(name: str) -> Parts:
    """The components of a member name; BadRequest for an absolute name or a ``..``."""
    if name.startswith("/"):
        raise refused(name, "an absolute name")
    parts = tuple(part for part in name.split("/") if part not in ("", "."))
    if ".." in parts:
        raise refused(name, "a name with '..' leaves the target directory")
    return parts


def link_text(info: tarfile.TarInfo, parts: Parts) -> str:
    """A symbolic link's target, if it stays under the extraction directory."""
    target = info.linkname
    if not target:
        raise refused(info.name, "a symbolic link to nothing")
    if target.startswith("/"):
        raise refused(info.name, f"a symbolic link to the absolute path {target!r}")
    steps = [step for step in target.split("/") if step not in ("", ".")]
    rest = _after_climbs(steps)
    if ".." in rest or len(steps) - len(rest) > len(parts) - 1:
        raise refused(info.name, f"a symbolic link to {target!r} leaves the target directory")
    return target


def _after_climbs(steps: list[str]) -> list[str]:
    """The steps after the leading ``..`` ones."""
    for index, step in enumerate(steps):
        if step != "..":
            return steps[index:]
    return []


def special_kind(info: tarfile.TarInfo) -> str:
    if info.ischr():
        return "character device"
    if info.isblk():
        return "block device"
    if info.isfifo():
        return "FIFO"
    return f"member of type {info.type!r}"
