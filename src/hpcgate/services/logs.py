"""A service's stderr on its event stream: while a stream is open, each live replica's
job's stderr is followed (from its start) and sent line by line as ``stderr`` events."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from hpcgate.clock import utcnow
from hpcgate.jobs.output import Stream
from hpcgate.jobs.service import JobService
from hpcgate.model.errors import HpcgateError
from hpcgate.model.services import ServiceEvent
from hpcgate.store.services import ReplicaStore
from hpcgate.store.tables import ReplicaRow
from hpcgate.target import Target

log = logging.getLogger(__name__)

POLL_SECONDS = 1.0  # how soon a new replica's stderr is followed
LINE_MAX = 4096  # characters of one line sent; the rest is cut


async def follow_stderr(
    jobs: JobService,
    target: Target,
    replicas: ReplicaStore,
    service: int,
    queue: asyncio.Queue[ServiceEvent],
) -> None:
    """Put the stderr lines of the service's replicas on ``queue`` until cancelled."""
    following: dict[int, asyncio.Task[None]] = {}
    try:
        while True:
            for replica in await replicas.of(service, live_only=True):
                if replica.job_id is not None and replica.pk not in following:
                    task = asyncio.create_task(_lines(jobs, target, replica, queue))
                    following[replica.pk] = task
            await asyncio.sleep(POLL_SECONDS)
    finally:
        for task in following.values():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _lines(
    jobs: JobService, target: Target, replica: ReplicaRow, queue: asyncio.Queue[ServiceEvent]
) -> None:
    assert replica.job_id is not None
    pending: str | None = ""
    try:
        output = await jobs.output(target, replica.job_id, Stream.STDERR)
        async for chunk in output.follow(0):
            lines, pending = split_lines(pending, chunk.text)
            _put(queue, replica, lines)
    except HpcgateError as exc:  # its job or file went away: the stream goes on
        log.info("stderr of replica %s: %s", replica.pk, exc.detail)
    _put(queue, replica, [pending] if pending else [])


def split_lines(pending: str | None, text: str) -> tuple[list[str], str | None]:
    """The lines that ``text`` ends, each cut to :data:`LINE_MAX`, and what is left: the
    start of a line not yet ended, or None while the rest of a line already sent cut is
    skipped. A line that comes in several chunks is one event."""
    *ended, last = text.split("\n")
    if not ended:
        return _grown(pending, last)
    lines = ([] if pending is None else [pending + ended[0]]) + ended[1:]
    more, rest = _grown("", last)
    return [line.removesuffix("\r")[:LINE_MAX] for line in lines] + more, rest


def _grown(pending: str | None, text: str) -> tuple[list[str], str | None]:
    """A line not yet ended with ``text`` added: sent cut once it is too long."""
    if pending is None:
        return [], None
    line = pending + text
    return ([line[:LINE_MAX]], None) if len(line) > LINE_MAX else ([], line)


def _put(queue: asyncio.Queue[ServiceEvent], replica: ReplicaRow, lines: list[str]) -> None:
    for line in lines:
        event = ServiceEvent(kind="stderr", replica=replica.pk, text=line, time=utcnow())
        if not queue.full():
            queue.put_nowait(event)
