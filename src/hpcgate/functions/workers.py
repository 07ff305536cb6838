"""A function's workers as the services code has them: the replicas of its pool, found
through the routing table (a ready one for a new invocation, waiting while one starts) or,
for an invocation already on one, by the replica's row (it may be draining)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

from hpcgate.model.errors import HpcgateError
from hpcgate.model.services import ReplicaState
from hpcgate.services.pool import Pools
from hpcgate.services.traffic import Route, Traffic
from hpcgate.store.services import ReplicaStore
from hpcgate.target import Target


class Workers:
    def __init__(
        self,
        traffic: Traffic,
        pools: Pools,
        replicas: ReplicaStore,
        target: Callable[[str, str], Target],
        wait_seconds: float,
    ) -> None:
        self._traffic = traffic
        self._pools = pools
        self._replicas = replicas
        self._target = target  # the pool's owner on a system
        self.wait_seconds = wait_seconds

    def ready_now(self, service: int) -> Route | None:
        """The pool's least busy ready worker, if it has one now."""
        return self._traffic.pick(service)

    async def ready(self, service: int) -> Route | None:
        """The pool's least busy ready worker, waiting up to the services' bound."""
        return await self._traffic.wait_route(service, self.wait_seconds)

    def instead_of(self, failed: Route) -> Route | None:
        """Another ready worker, ``failed`` (which could not be connected to) suspect."""
        self._traffic.suspect(failed.replica)
        other = self._traffic.instead_of(failed.replica)
        return None if other is None or other.replica == failed.replica else other

    async def route(self, replica: int, owner: str, system: str) -> Route | None:
        """The way to an invocation's worker while its replica is live and located."""
        row = await self._replicas.get_pk(replica)
        if row is None or row.address is None or not _live(row.state):
            return None
        target = self._target(owner, system)
        try:
            account = await target.account()
        except HpcgateError:
            return None
        pool = self._pools.get(replica, target.cluster.transport, account)
        return Route(replica, row.address, row.port, pool)

    async def alive(self, replica: int) -> bool:
        row = await self._replicas.get_pk(replica)
        return row is not None and _live(row.state)

    @contextlib.contextmanager
    def serving(self, replica: int) -> Iterator[None]:
        """Count one request on the worker (its pool scales by these, and a worker with
        one is never idle) while the block runs."""
        with self._traffic.serving(replica):
            yield


def _live(state: str) -> bool:
    try:
        return ReplicaState(state).live
    except ValueError:
        return False
