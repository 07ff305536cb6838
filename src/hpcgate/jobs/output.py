"""A job's output files: read whole, or followed live until the job ends."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum

from hpcgate.errors import NotFound
from hpcgate.jobs.models import JobState
from hpcgate.jobs.service import JobService
from hpcgate.principal import Principal
from hpcgate.store.tables import JobEventRow, JobRow
from hpcgate.transports.base import Transport

CHUNK = 64 * 1024
FOLLOW_PERIOD = 0.2


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
    """The file from ``offset`` as it is now, in chunks; empty if the job wrote nothing yet."""
    row = await jobs.job_row(who, system, job_id)
    transport = jobs.cluster(system).transport
    path = _maybe_path(row, stream)
    if path is None or await transport.file_size(path) is None:
        if JobState(row.state).terminal:
            raise NotFound(f"job {job_id} left no {stream} file at {path}")
        return  # not started yet: no output so far
    while chunk := await transport.read(path, offset, CHUNK):
        offset += len(chunk)
        yield chunk


async def follow_output(
    jobs: JobService, who: Principal, system: str, job_id: str, stream: Stream, offset: int
) -> AsyncIterator[OutputChunk]:
    """New output as it is written, from ``offset``, until the job has ended and all is read."""
    row = await jobs.job_row(who, system, job_id)
    transport = jobs.cluster(system).transport
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    with jobs.subscribe(row) as events:
        ended = JobState(row.state).terminal
        while True:
            async for chunk in _new_bytes(transport, _maybe_path(row, stream), offset):
                offset += len(chunk)
                if text := decoder.decode(chunk):
                    yield OutputChunk(text, offset)
            if ended:
                return
            ended = await _wait_for_end(events)
            row = await jobs.refresh(row)
            ended = ended or JobState(row.state).terminal


async def _new_bytes(transport: Transport, path: str | None, offset: int) -> AsyncIterator[bytes]:
    if path is None or (await transport.file_size(path) or 0) <= offset:
        return
    while chunk := await transport.read(path, offset, CHUNK):
        offset += len(chunk)
        yield chunk


async def _wait_for_end(events: asyncio.Queue[JobEventRow]) -> bool:
    """Sleep one follow period; True if a terminal event arrived meanwhile."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(FOLLOW_PERIOD):
            return JobState((await events.get()).state).terminal
    return False
