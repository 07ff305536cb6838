"""A service's events (its replicas' changes of state, their servers' stderr lines),
fanned out in-process to the open event streams."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from hpcgate.model.services import ServiceEvent

QUEUE_MAX = 1000  # a stream that falls this far behind loses events rather than memory


class ServiceEvents:
    def __init__(self) -> None:
        self._queues: defaultdict[int, set[asyncio.Queue[ServiceEvent]]] = defaultdict(set)

    def open(self, service: int) -> asyncio.Queue[ServiceEvent]:
        """A queue that receives the service's events from now on, until :meth:`close`."""
        queue: asyncio.Queue[ServiceEvent] = asyncio.Queue(QUEUE_MAX)
        self._queues[service].add(queue)
        return queue

    def close(self, service: int, queue: asyncio.Queue[ServiceEvent]) -> None:
        self._queues[service].discard(queue)
        if not self._queues[service]:
            del self._queues[service]

    def publish(self, service: int, event: ServiceEvent) -> None:
        for queue in self._queues.get(service, ()):
            if not queue.full():
                queue.put_nowait(event)

    def listened(self, service: int) -> bool:
        return service in self._queues
