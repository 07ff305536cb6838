"""A job's output files: read whole, or followed live until the job ends."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

from hpcgate.accounts import Account
from hpcgate.jobs.service import JobService
from hpcgate.model.errors import CommandTimeout, NotFound, TransportError
from hpcgate.model.jobs import JobState
from hpcgate.model.principal import Principal
from hpcgate.store.jobs import StateChange
from hpcgate.store.tables import JobRow

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


def _maybe_path(row: JobRow, stream: Stream) -> str | None:
    return row.stdout if stream is Stream.STDOUT else row.stderr


async def read_output(
    jobs: JobService, who: Principal, system: str, job_id: str, stream: Stream, offset: int
) -> AsyncIterator[bytes]:
    """The file from ``offset`` up to its size now, in chunks; empty if the job wrote nothing
    yet. The size and the first chunk are read before this returns, so that a system out of
    reach fails the request (503) instead of cutting off an answer already begun (200)."""
    row = await jobs.job_row(who, system, job_id)
    files = _Files(jobs, who, system)
    path = _maybe_path(row, stream)
    size = None if path is None else await files.size(path)
    if path is None or size is None:
        if JobState(row.state).terminal:
            raise NotFound(f"job {job_id} left no {stream} file at {path}")
        path, size = "", 0  # not started yet: no output so far
    first = await files.read(path, offset, size)
    return _chunks(files, path, first, offset, size)


async def _chunks(
    files: _Files, path: str, chunk: bytes, offset: int, size: int
) -> AsyncIterator[bytes]:
    """``chunk``, read at ``offset``, then the rest of the file up to ``size``."""
    while chunk:
        yield chunk
        offset += len(chunk)
        chunk = await files.read(path, offset, size)


async def follow_output(
    jobs: JobService, who: Principal, system: str, job_id: str, stream: Stream, offset: int
) -> AsyncIterator[OutputChunk]:
    """New output as it is written, from ``offset``, until the job has ended and all is read.
    A read that fails because the system is out of reach (an sshd restarting) is tried again
    a second later, up to :data:`FOLLOW_RETRIES` times in a row, so a follow outlives a
    short outage with nothing lost or repeated."""
    row = await jobs.job_row(who, system, job_id)
    files = _Files(jobs, who, system)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    failures = 0
    with jobs.subscribe(row) as events:
        ended = JobState(row.state).terminal
        while True:
            try:
                async for chunk in _new_bytes(files, _maybe_path(row, stream), offset):
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
            row = await jobs.refresh(row)
            ended = ended or JobState(row.state).terminal


class _Files:
    """The system's files as the caller's account sees them."""

    def __init__(self, jobs: JobService, who: Principal, system: str) -> None:
        self._jobs = jobs
        self._who = who
        self._cluster = jobs.cluster(system)
        self._transport = self._cluster.transport

    async def size(self, path: str) -> int | None:
        return await self._transport.files(await self._account()).size(path)

    async def read(self, path: str, offset: int, end: int) -> bytes:
        """At most a chunk, and nothing past ``end`` (the size the file had): a read of a
        known length is one request over SFTP, not a chunk's worth of parallel ones."""
        if offset >= end:
            return b""
        wanted = min(CHUNK, end - offset)
        return await self._transport.files(await self._account()).read(path, offset, wanted)

    async def _account(self) -> Account | None:
        return await self._jobs.account(self._who, self._cluster)  # cached by Accounts


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
