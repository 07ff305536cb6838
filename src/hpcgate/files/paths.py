"""Which paths a caller may touch: the checks on the string, and the system's roots.

A request's path is checked twice. First the string, here, with no I/O: no NUL, no
``..``, no over-long name, and which root it lies in, by the strings alone (:meth:`Roots.owner`).
Then the path the system resolves it to (every symlink in it followed, as the caller's
account) must lie inside that root on the local system (found from the root's open
descriptor, so a symlink may only point within its own root), inside one of the roots over
SSH; a symlink anywhere in a path that points outside is refused, never followed.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass, replace

from hpcgate.model.errors import BadRequest, Forbidden

MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


def clean(path: str, home: str) -> str:
    """The absolute, normalised form of a requested path (relative ones start at home)."""
    if not path:
        raise BadRequest("the path is empty")
    if "\x00" in path:
        raise BadRequest("the path contains a NUL byte")
    if len(path.encode()) > MAX_PATH_BYTES:
        raise BadRequest(f"the path is longer than {MAX_PATH_BYTES} bytes")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise BadRequest("'..' is not allowed in a path")
    if any(len(part.encode()) > MAX_NAME_BYTES for part in parts):
        raise BadRequest(f"a name in the path is longer than {MAX_NAME_BYTES} bytes")
    start = "/" if path.startswith("/") else home
    return posixpath.join(start, *parts)


def inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


@dataclass(frozen=True, slots=True)
class Roots:
    """A caller's roots on one system, as configured and as real paths (the same, but
    where a remote system resolves them otherwise), and its home."""

    shown: tuple[str, ...]
    real: tuple[str, ...]
    home: str

    @classmethod
    def expand(cls, templates: list[str], user: str, home: str) -> Roots:
        shown = tuple(template.format(user=user, home=home) for template in templates)
        start = home if any(inside(home, root) for root in shown) else shown[0]
        return cls(shown, shown, start)

    def with_root(self, root: str) -> Roots:
        """These roots and one more (a project's)."""
        return replace(self, shown=(*self.shown, root), real=(*self.real, root))

    def resolved(self, real: tuple[str, ...]) -> Roots:
        """The same roots with their real paths as another machine resolves them (a system
        reached over SSH, where a root may be a symlink that it is not here)."""
        return replace(self, real=real)

    def owner(self, path: str, asked: str) -> str:
        """The root a clean path lies in, by the strings alone (the outermost, where roots
        nest); Forbidden if none."""
        found = [root for root in self.shown if inside(path, root)]
        if not found:
            raise Forbidden(f"{asked} is outside this system's file roots")
        return min(found, key=len)

    def check(self, real: str, asked: str) -> None:
        """Refuse a resolved path outside every root."""
        if not any(inside(real, root) for root in self.real):
            raise Forbidden(f"{asked} is outside this system's file roots")

    def check_not_root(self, real: str, asked: str) -> None:
        if real in self.real:
            raise Forbidden(f"{asked} is one of the roots; it cannot be moved or removed")
