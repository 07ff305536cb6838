"""HTTP byte ranges and validators for downloads (RFC 9110 sections 13 and 14), without I/O."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.utils import formatdate

from hpcgate.model.errors import RangeNotSatisfiable

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


@dataclass(frozen=True, slots=True)
class Span:
    """Bytes ``start`` to ``end`` inclusive of a file of ``size`` bytes."""

    start: int
    end: int
    size: int

    @property
    def length(self) -> int:
        return self.end - self.start + 1

    def content_range(self) -> str:
        return f"bytes {self.start}-{self.end}/{self.size}"


def etag(inode: int, size: int, modified_ns: int) -> str:
    return f'"{inode:x}-{size:x}-{modified_ns:x}"'


def last_modified(modified_ns: int) -> str:
    return formatdate(modified_ns / 1e9, usegmt=True)


def requested_span(header: str | None, size: int) -> Span | None:
    """The one range asked for, or None for the whole file (also for forms we do not serve,
    such as several ranges, which RFC 9110 lets a server answer with the whole file)."""
    if header is None:
        return None
    match = _RANGE.match(header.replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if not first and not last:
        return None
    if not first:  # the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable(f"an empty suffix range of a {size}-byte file")
        return Span(max(0, size - suffix), size - 1, size) if size else _unsatisfiable(size)
    start = int(first)
    if start >= size:
        _unsatisfiable(size)
    end = min(int(last), size - 1) if last else size - 1
    if end < start:
        return None  # syntactically invalid: ignored, per RFC 9110
    return Span(start, end, size)


def _unsatisfiable(size: int) -> Span:
    raise RangeNotSatisfiable(f"the range lies outside the file ({size} bytes)", size=size)


def still_valid(if_range: str | None, tag: str, modified: str) -> bool:
    """Whether a Range may be honoured: no If-Range, or one that matches the file."""
    return if_range is None or if_range in (tag, modified)
