"""A job's state changes: kept by the store, fanned out in-process to the streams.

The store keeps every event (so a reconnecting client replays what it missed); the bus
only wakes the streams that are open in this process.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

from hpcgate.jobs.rows import to_event
from hpcgate.model.jobs import JobEvent, JobState
from hpcgate.store.jobs import JobStore, StateChange
from hpcgate.store.tables import JobRow


class EventBus:
    def __init__(self) -> None:
        self._queues: defaultdict[int, set[asyncio.Queue[StateChange]]] = defaultdict(set)

    @contextmanager
    def subscribe(self, job_pk: int) -> Iterator[asyncio.Queue[StateChange]]:
        """A queue that receives the job's events while the block is open."""
        queue: asyncio.Queue[StateChange] = asyncio.Queue()
        self._queues[job_pk].add(queue)
        try:
            yield queue
        finally:
            self._queues[job_pk].discard(queue)
            if not self._queues[job_pk]:
                del self._queues[job_pk]

    def publish(self, job_pk: int, event: StateChange) -> None:
        for queue in self._queues.get(job_pk, ()):
            queue.put_nowait(event)


class JobEvents:
    """One job's state changes, for a caller the service has checked."""

    def __init__(self, row: JobRow, store: JobStore, bus: EventBus) -> None:
        self._row = row
        self._store = store
        self._bus = bus

    async def after(self, after: int) -> AsyncIterator[JobEvent]:
        """The changes after event ``after``: those recorded, then live ones until the job
        has ended."""
        row = self._row
        with self._bus.subscribe(row.pk) as queue:
            for event in await self._store.events_after(row.pk, after):
                after = event.id
                yield to_event(row, event)
            current = await self._store.get(row.system, row.native_id or "")
            ended = current is not None and JobState(current.state).terminal
            while not (ended and queue.empty()):
                event = await queue.get()
                if event.id > after:
                    after = event.id
                    yield to_event(row, event)
                    ended = ended or JobState(event.state).terminal
