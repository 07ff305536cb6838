"""What the proxy and the controller share in memory: the ready replicas of each service
(the routing table), the requests each replica serves now, the requests waiting for one.

The controller writes the routing table each round; the proxy reads it, so a proxied
request costs no database read to find its replica. Routing is least in-flight among the
ready replicas; a replica the proxy saw fail is left out until its next good health check.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from hpcgate.services.pool import ReplicaPool


@dataclass(frozen=True, slots=True)
class Route:
    """A ready replica: where it listens and the connection pool that reaches it."""

    replica: int
    address: str
    port: int
    pool: ReplicaPool
    host: bytes = field(init=False, repr=False)  # the Host header it is reached by

    def __post_init__(self) -> None:
        object.__setattr__(self, "host", f"{self.address}:{self.port}".encode())


class Traffic:
    def __init__(self) -> None:
        self._routes: dict[int, list[Route]] = {}
        self._service_of: dict[int, int] = {}  # replica -> its service, while it is routed
        self._suspect: set[int] = set()
        self.in_flight: Counter[int] = Counter()
        self._last_used: dict[int, float] = {}
        self.waiting: Counter[int] = Counter()
        self._changed = asyncio.Event()
        self.wake = asyncio.Event()  # set when the controller should act now

    def set_routes(self, service: int, routes: list[Route]) -> None:
        """The service's ready replicas, as the controller found them this round."""
        for route in routes:
            self._last_used.setdefault(route.replica, time.monotonic())
            self._service_of[route.replica] = service
            route.pool.routed(True)
        if routes:
            self._routes[service] = routes
        else:
            self._routes.pop(service, None)
        self._changed.set()
        self._changed = asyncio.Event()

    def withdraw(self, replica: int) -> None:
        """The replica takes no new requests from now on (it drains, or it has ended), not
        only from the controller's next round."""
        service = self._service_of.get(replica)
        routes = self._routes.get(service, []) if service is not None else []
        kept = [route for route in routes if route.replica != replica]
        if service is not None and len(kept) < len(routes):
            self.set_routes(service, kept)
            for route in routes:
                if route.replica == replica:
                    route.pool.routed(False)  # no more spares opened ahead

    def confirm(self, replica: int) -> None:
        """A good health check: the replica takes requests again."""
        self._suspect.discard(replica)

    def suspect(self, replica: int) -> None:
        """The proxy saw the replica fail: no requests until a health check is good."""
        self._suspect.add(replica)
        self.wake.set()

    def suspected(self, replica: int) -> bool:
        """Whether the proxy saw the replica fail since its last good health check."""
        return replica in self._suspect

    def forget(self, replica: int) -> None:
        self._suspect.discard(replica)
        self._last_used.pop(replica, None)
        self._service_of.pop(replica, None)

    def idle_for(self, replica: int) -> float:
        """Seconds since the replica's last request ended (or it became ready)."""
        if self.in_flight[replica]:
            return 0.0
        return time.monotonic() - self._last_used.get(replica, time.monotonic())

    def pick(self, service: int) -> Route | None:
        """The ready replica serving the fewest requests now, if any."""
        usable = [r for r in self._routes.get(service, []) if r.replica not in self._suspect]
        return min(usable, key=lambda r: self.in_flight[r.replica], default=None)

    def instead_of(self, replica: int) -> Route | None:
        """Another ready replica of ``replica``'s service, the one serving the fewest (the
        proxy could not connect to ``replica``, which it has suspected)."""
        service = self._service_of.get(replica)
        return None if service is None else self.pick(service)

    async def wait_route(self, service: int, seconds: float) -> Route | None:
        """A ready replica, waiting up to ``seconds`` for one while the controller starts
        one (each waiting request counts as load)."""
        deadline = time.monotonic() + seconds
        route = self.pick(service)
        if route is not None:
            return route
        self.waiting[service] += 1
        try:
            while route is None and (left := deadline - time.monotonic()) > 0:
                self.wake.set()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), min(left, 1.0))
                route = self.pick(service)
            return route
        finally:
            self.waiting[service] -= 1
            if not self.waiting[service]:
                del self.waiting[service]

    @contextlib.contextmanager
    def serving(self, replica: int) -> Iterator[None]:
        """Count one request on ``replica`` while the block runs."""
        self.in_flight[replica] += 1
        try:
            yield
        finally:
            self.in_flight[replica] -= 1
            self._last_used[replica] = time.monotonic()
            if not self.in_flight[replica]:
                del self.in_flight[replica]
