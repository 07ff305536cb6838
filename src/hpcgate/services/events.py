"""A service's events (its replicas' changes of state, their servers' stderr lines, its
problem), fanned out in-process to the open event streams, and its problem now."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from hpcgate.clock import utcnow
from hpcgate.model.services import ServiceEvent

QUEUE_MAX = 1000  # a stream that falls this far behind loses events rather than memory


class ServiceEvents:
    def __init__(self) -> None:
        self._queues: defaultdict[int, set[asyncio.Queue[ServiceEvent]]] = defaultdict(set)
        self._problems: dict[int, str] = {}

    def open(self, service: int) -> asyncio.Queue[ServiceEvent]:
        """A queue that receives the service's events from now on, until :meth:`close`,
        the first its problem if it has one (which may have begun before)."""
        queue: asyncio.Queue[ServiceEvent] = asyncio.Queue(QUEUE_MAX)
        if service in self._problems:
            text = self._problems[service]
            queue.put_nowait(ServiceEvent(kind="problem", text=text, time=utcnow()))
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

    def set_problem(self, service: int, text: str | None) -> None:
        """What keeps the controller from starting the replicas the service wants (None:
        nothing); a change is published as a ``problem`` event (its text None: solved)."""
        if self._problems.get(service) == text:
            return
        if text is None:
            del self._problems[service]
        else:
            self._problems[service] = text
        self.publish(service, ServiceEvent(kind="problem", text=text, time=utcnow()))

    def problem(self, service: int) -> str | None:
        return self._problems.get(service)

    def forget(self, service: int) -> None:
        """A removed service has no problem left."""
        self._problems.pop(service, None)
