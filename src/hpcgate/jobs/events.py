"""In-process fan-out of job state changes to the streams that follow them.

The store keeps every event (so a reconnecting client replays what it missed); this bus
only wakes the streams that are open in this process.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from hpcgate.store.jobs import StateChange


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
