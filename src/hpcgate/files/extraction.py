"""Extracting a tar archive through the caller's :class:`FileSystem`, into a fresh directory.

The archive is read through the file system (:meth:`FileSystem.open_read`) and parsed with
:mod:`tarfile` in stream mode in a worker thread; each member is vetted
(:mod:`.archive_members`) and made through the same file system, as the caller's account,
by a :class:`Sink` on the event loop. So it works alike on every transport, and no program
on the system ever sees the archive.

Nothing is ever written through a symbolic link: a member's directories are resolved only
through directories this extraction made (the directory itself is new, so nothing else is
in it), files are created exclusively (never through a final link), and a later member of
the same name replaces a file or link, never writes into it. A file's mode is set through
its open handle; a directory's, at the end, by name (:meth:`FileSystem.chmod`), so that
rests on the file system's own resolution of paths. A member that cannot be made
safely fails the whole extraction, naming the member; the directory is then removed again,
as it is when the task is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import lzma
import posixpath
import tarfile
import threading
import zlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread

from hpcgate.files.archive_members import Kind, Member, Parts, refused, vet
from hpcgate.model.errors import BadRequest, PayloadTooLarge
from hpcgate.tasks.service import Progress
from hpcgate.transports.filesystem import FileSystem, OpenFile

CHUNK = 1 << 20
StreamMode = Literal["r|*", "r|gz", "r|bz2", "r|xz", "r|"]
MODES: dict[str, StreamMode] = {
    "auto": "r|*", "gzip": "r|gz", "bzip2": "r|bz2", "xz": "r|xz", "none": "r|",
}  # fmt: skip
_UNREADABLE = (tarfile.TarError, EOFError, zlib.error, lzma.LZMAError, OSError)


@dataclass(frozen=True, slots=True)
class ExtractLimits:
    """How much one extraction may make: members, and bytes of file contents."""

    members: int
    bytes: int


class Source:
    """The archive, read in order through an open file; progress is the bytes read."""

    def __init__(self, file: OpenFile, total: int, progress: Progress) -> None:
        self._file, self._total, self._progress = file, total, progress
        self.offset = 0

    async def read(self, size: int) -> bytes:
        data = await self._file.read(self.offset, size)
        self.offset += len(data)
        self._progress.update(self.offset, self._total)
        return data


class Sink:
    """Makes vetted members under ``root`` through ``fs``; knows what it made."""

    def __init__(self, fs: FileSystem, root: str, limits: ExtractLimits) -> None:
        self._fs, self._root, self._limits = fs, root, limits
        self._made: dict[Parts, Kind] = {(): Kind.DIRECTORY}
        self._modes: dict[Parts, int] = {}
        self._open: OpenFile | None = None
        self.members = 0
        self.bytes = 0

    def path(self, parts: Parts) -> str:
        return posixpath.join(self._root, *parts)

    async def add(self, member: Member) -> None:
        """Make a directory or link (a file: :meth:`start_file`, :meth:`write`, ...)."""
        await self._admit(member)
        if member.kind is Kind.DIRECTORY:
            self._modes[member.parts] = member.mode
            if self._made.get(member.parts) is not Kind.DIRECTORY:
                await self._fs.mkdir(self.path(member.parts), parents=False)
        elif member.kind is Kind.SYMLINK:
            await self._fs.symlink(self.path(member.parts), member.link)
        else:
            await self._copy(member)
        self._made[member.parts] = Kind.FILE if member.kind is Kind.HARDLINK else member.kind

    async def start_file(self, member: Member) -> None:
        await self._admit(member)
        self._open = await self._fs.open_new(self.path(member.parts))
        self._made[member.parts] = Kind.FILE

    async def write(self, data: bytes) -> None:
        assert self._open is not None
        await self._open.write(data)

    async def end_file(self, member: Member) -> None:
        """Its mode set through the open file, never by a name something else may hold."""
        assert self._open is not None
        await self._open.chmod(member.mode)
        await self.close()

    async def close(self) -> None:
        """Close the file being written, if any."""
        opened, self._open = self._open, None
        if opened is not None:
            await opened.close()

    async def finish(self) -> None:
        """Give the directories their modes, deepest first (they stayed writable till now)."""
        for parts in sorted(self._modes, key=len, reverse=True):
            await self._fs.chmod(self.path(parts), self._modes[parts])

    async def _admit(self, member: Member) -> None:
        """Count the member against the limits, make its directories, clear its name."""
        self._count()
        self._grow(member.size)
        await self._directories(member)
        await self._clear(member)

    def _count(self) -> None:
        """One more entry made (a member, or a directory a member's name implies)."""
        self.members += 1
        if self.members > self._limits.members:
            raise PayloadTooLarge(f"the archive makes more than {self._limits.members} entries")

    def _grow(self, size: int) -> None:
        self.bytes += size
        if self.bytes > self._limits.bytes:
            raise PayloadTooLarge(f"the archive holds more than {self._limits.bytes} bytes")

    async def _directories(self, member: Member) -> None:
        """Make the missing directories of a member; refuse any that is no directory."""
        for depth in range(1, len(member.parts)):
            parts = member.parts[:depth]
            kind = self._made.get(parts)
            if kind is None:
                self._count()
                await self._fs.mkdir(self.path(parts), parents=False)
                self._made[parts] = Kind.DIRECTORY
            elif kind is not Kind.DIRECTORY:
                raise refused(member.name, f"{'/'.join(parts)} is a {kind.value}, not a directory")

    async def _clear(self, member: Member) -> None:
        """A later member of a name replaces the file or link an earlier one made there."""
        kind = self._made.get(member.parts)
        if kind is None or (kind is Kind.DIRECTORY and member.kind is Kind.DIRECTORY):
            return
        if Kind.DIRECTORY in (kind, member.kind):
            raise refused(member.name, f"the name is already a {kind.value} from the archive")
        await self._fs.remove(self.path(member.parts), recursive=False)
        del self._made[member.parts]

    async def _copy(self, member: Member) -> None:
        """A hard link, made as a copy of the file an earlier member made."""
        if self._made.get(member.source) is not Kind.FILE:
            raise refused(member.name, "a hard link to no file extracted before it")
        reading = await self._fs.open_read(self.path(member.source))
        try:
            self._grow((await reading.info()).size)
            self._open = await self._fs.open_new(self.path(member.parts))
            offset = 0
            while data := await reading.read(offset, CHUNK):
                await self.write(data)
                offset += len(data)
        finally:
            await reading.close()
        await self.end_file(member)


async def extract(
    fs: FileSystem, archive: str, root: str, compression: str, limits: ExtractLimits,
    progress: Progress, parsers: anyio.CapacityLimiter | None = None,
) -> dict[str, Any]:  # fmt: skip
    """Extract ``archive`` into the directory ``root``, which the caller just made; on any
    failure or cancellation ``root`` is removed again. The parsing thread is one of
    ``parsers`` (else of anyio's default threads, which the file operations it waits for
    may need: give a gateway's extractions a limiter of their own)."""
    sink = Sink(fs, root, limits)
    try:
        file = await fs.open_read(archive)
        try:
            source = Source(file, (await file.info()).size, progress)
            await _parse(source, MODES[compression], sink, parsers)
            await sink.finish()
        finally:
            with anyio.CancelScope(shield=True):
                await sink.close()
                await file.close()
    except BaseException:
        with anyio.CancelScope(shield=True):
            await fs.remove(root, recursive=True)
        raise
    return {"members": sink.members, "bytes": sink.bytes, "archive_bytes": source.offset}


T = TypeVar("T")


class _Stopped(Exception):
    """The extraction was cancelled: the parsing thread ends at its next call."""


async def _parse(
    source: Source, mode: StreamMode, sink: Sink, parsers: anyio.CapacityLimiter | None
) -> None:
    """:func:`_unpack` in a worker thread. Cancelled, it tells the thread to stop and
    waits for it to end before it lets the cancellation on: the thread calls back into
    the event loop, so it must never outlive the extraction (one left running held a
    test process at its exit, waiting for a loop that was gone)."""
    stop = threading.Event()
    parsing = asyncio.ensure_future(
        anyio.to_thread.run_sync(_unpack, source, mode, sink, stop, limiter=parsers)
    )
    try:
        await asyncio.shield(parsing)
    except asyncio.CancelledError:
        stop.set()
        while not parsing.done():  # a step of the thread: at most one chunk
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([parsing])
        if not parsing.cancelled():
            parsing.exception()  # retrieved: the cancellation is what is raised
        raise


def _caller(stop: threading.Event) -> Callable[..., Any]:
    """``anyio.from_thread.run`` that raises :class:`_Stopped` once ``stop`` is set."""

    def run(func: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
        if stop.is_set():
            raise _Stopped()
        return anyio.from_thread.run(func, *args)

    return run


def _unpack(source: Source, mode: StreamMode, sink: Sink, stop: threading.Event) -> None:
    """In a worker thread: parse the archive, hand each vetted member to ``sink``."""
    run = _caller(stop)
    try:
        reader: Any = _Reader(source, run)  # tarfile's stream mode calls only read()
        with tarfile.open(fileobj=reader, mode=mode, bufsize=CHUNK) as archive:
            for info in archive:
                member = vet(info)
                if member is None:
                    continue
                if member.kind is not Kind.FILE:
                    run(sink.add, member)
                    continue
                run(sink.start_file, member)
                contents = archive.extractfile(info)
                assert contents is not None  # a regular file always has contents
                while data := contents.read(CHUNK):
                    run(sink.write, data)
                run(sink.end_file, member)
    except _UNREADABLE as error:
        raise BadRequest(f"not a readable tar archive: {error}") from None


class _Reader:
    """The file object :mod:`tarfile` reads from, in the worker thread."""

    def __init__(self, source: Source, run: Callable[..., Any]) -> None:
        self._source = source
        self._run = run

    def read(self, size: int = CHUNK) -> bytes:
        data: bytes = self._run(self._source.read, size)
        return data
