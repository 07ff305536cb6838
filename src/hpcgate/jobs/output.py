"""A job's output files: read whole, or followed live until the job ends."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

from hpcgate.jobs.events import EventBus
from hpcgate.jobs.rows import to_job
from hpcgate.model.errors import CommandTimeout, NotFound, TransportError
from hpcgate.model.jobs import Job, JobState
from hpcgate.store.jobs import JobStore, StateChange
from hpcgate.store.tables import JobRow
from hpcgate.target import Target

CHUNK = 1 << 20  # per read: in multi-user mode each read is one small process as the user
FOLLOW_PERIOD = 0.2
FOLLOW_RETRIES = 10  # reads in a row that may fail (system out of reach) before a follow ends
FOLLOW_RETRY_PAUSE = 1.0


class Stream(StrEnum):
    STDOUT = "stdout"
    STDERR = "stderr"


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """Text read from a job's file; ``offset`` is the byte offset just after it."""

    text: str
    offset: int


class JobOutput:
    """One job's stdout or stderr as the caller's account sees it.

    :meth:`JobService.output` makes one from the job's row, read once (scope and owner
    checked, so an unknown job is a 404 before any answer starts). Reading serves what the
    file holds now; following also re-reads the row's state, to know when the job has ended.
    """

    def __init__(
        self, target: Target, row: JobRow, stream: Stream, store: JobStore, bus: EventBus
    ) -> None:
        self._files = _Files(target)
        self._row = row
        self._stream = stream
        self._store = store
        self._bus = bus

    @property
    def job(self) -> Job:
        """The job as last read: once a follow is done, as it ended."""
        return to_job(self._row)

    def _path(self) -> str | None:
        return self._row.stdout if self._stream is Stream.STDOUT else self._row.stderr

    async def read(self, offset: int) -> AsyncIterator[bytes]:
        """The file from ``offset`` up to its size now, in chunks; empty if the job wrote
        nothing yet. The size and the first chunk are read before this returns, so that a
        system out of reach fails the request (503) instead of cutting off an answer already
        begun (200)."""
        path = self._path()
        size = None if path is None else await self._files.size(path)
        if path is None or size is None:
            if JobState(self._row.state).terminal:
                raise NotFound(f"job {self._row.native_id} left no {self._stream} file at {path}")
            path, size = "", 0  # not started yet: no output so far
        first = await self._files.read(path, offset, size)
        return _chunks(self._files, path, first, offset, size)

    async def follow(self, offset: int) -> AsyncIterator[OutputChunk]:
        """New output as it is written, from ``offset``, until the job has ended and all is
        read. A read that fails because the system is out of reach (an sshd restarting) is
        tried again a second later, up to :data:`FOLLOW_RETRIES` times in a row, so a follow
        outlives a short outage with nothing lost or repeated."""
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        failures = 0
        with self._bus.subscribe(self._row.pk) as events:
            ended = JobState(self._row.state).terminal
            while True:
                try:
                    async for chunk in _new_bytes(self._files, self._path(), offset):
                        offset += len(chunk)
                        if text := decoder.decode(chunk):
                            yield OutputChunk(text, offset)
                    failures = 0
                except (TransportError, CommandTimeout):
                    failures += 1  # the system out of reach for a moment: read on next time
                    if failures > FOLLOW_RETRIES:
                        raise
                    await asyncio.sleep(FOLLOW_RETRY_PAUSE)
                    continue
                if ended:
                    return
                ended = await _wait_for_end(events)
                await self._refresh()
                ended = ended or JobState(self._row.state).terminal

    async def _refresh(self) -> None:
        """Read the row again: its state, and its files' paths once the job has started."""
        row = self._row
        self._row = await self._store.get(row.system, row.native_id or "") or row


async def _chunks(
    files: _Files, path: str, chunk: bytes, offset: int, size: int
) -> AsyncIterator[bytes]:
    """``chunk``, read at ``offset``, then the rest of the file up to ``size``."""
    while chunk:
        yield chunk
        offset += len(chunk)
        chunk = await files.read(path, offset, size)


class _Files:
    """The system's files as the caller's account sees them."""

    def __init__(self, target: Target) -> None:
        self._transport = target.cluster.transport
        self._account = target.account  # looked up on the first read, then kept

    async def size(self, path: str) -> int | None:
        return await self._transport.files(await self._account()).size(path)

    async def read(self, path: str, offset: int, end: int) -> bytes:
        """At most a chunk, and nothing past ``end`` (the size the file had): a read of a
        known length is one request over SFTP, not a chunk's worth of parallel ones."""
        if offset >= end:
            return b""
        wanted = min(CHUNK, end - offset)
        return await self._transport.files(await self._account()).read(path, offset, wanted)


async def _new_bytes(files: _Files, path: str | None, offset: int) -> AsyncIterator[bytes]:
    """What the file holds past ``offset``, up to the size it has now."""
    size = 0 if path is None else await files.size(path) or 0
    while path is not None and (chunk := await files.read(path, offset, size)):
        offset += len(chunk)
        yield chunk


async def _wait_for_end(events: asyncio.Queue[StateChange]) -> bool:
    """Sleep one follow period; True if a terminal event arrived meanwhile."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(FOLLOW_PERIOD):
            return JobState((await events.get()).state).terminal
    return False
