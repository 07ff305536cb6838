"""Partitions, nodes, reservations and the caller's associations, cached briefly.

However many clients ask, a system sees at most one query of each kind per ``info_cache``
seconds (per account for associations): concurrent requests share one query in flight.
Partitions, nodes and reservations are the same for every caller and are read with the
gateway's account; associations are read as the caller's account.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from hpcgate.accounts import Account, Accounts
from hpcgate.cluster import Cluster
from hpcgate.model.commands import Command, CommandResult
from hpcgate.model.errors import NotImplementedByScheduler
from hpcgate.model.principal import Scope
from hpcgate.model.status import Association, Node, Partition, Reservation
from hpcgate.schedulers.base import ClusterInfo
from hpcgate.target import Target

T = TypeVar("T")


class _Cache:
    """Results by key for ``ttl`` seconds, with one computation in flight per key."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, ...], tuple[float, asyncio.Task[Any]]] = {}

    async def get(self, key: tuple[str, ...], ttl: float, compute: Callable[[], Awaitable[T]]) -> T:
        entry = self._entries.get(key)
        now = time.monotonic()
        if entry is None or (entry[1].done() and (entry[0] < now or entry[1].exception())):
            entry = (now + ttl, asyncio.ensure_future(compute()))
            self._entries[key] = entry
        result: T = await asyncio.shield(entry[1])
        return result


class StatusService:
    def __init__(self, accounts: Accounts) -> None:
        self._accounts = accounts
        self._cache = _Cache()

    def _info(self, target: Target) -> tuple[Cluster, ClusterInfo]:
        target.who.require(Scope.JOBS_READ)
        cluster = target.cluster
        if cluster.scheduler.info is None:
            raise NotImplementedByScheduler(
                f"the {cluster.scheduler.kind} scheduler of {cluster.name!r} has no partitions,"
                " nodes, reservations or associations to show"
            )
        return cluster, cluster.scheduler.info

    async def partitions(self, target: Target) -> list[Partition]:
        cluster, info = self._info(target)
        return await self._shared(
            cluster, "partitions", info.partitions_command, info.parse_partitions
        )

    async def nodes(self, target: Target) -> list[Node]:
        cluster, info = self._info(target)
        return await self._shared(cluster, "nodes", info.nodes_command, info.parse_nodes)

    async def reservations(self, target: Target) -> list[Reservation]:
        cluster, info = self._info(target)
        return await self._shared(
            cluster, "reservations", info.reservations_command, info.parse_reservations
        )

    async def associations(self, target: Target) -> list[Association]:
        cluster, info = self._info(target)
        account = await target.account()
        name = self._login_name(cluster, account)

        command = info.associations_command(name)
        if command is None:
            return []

        async def query() -> list[Association]:
            result = await cluster.run("associations", command, account)
            return info.parse_associations(result)

        ttl = cluster.config.info_cache
        return await self._cache.get((cluster.name, "associations", name), ttl, query)

    def _login_name(self, cluster: Cluster, account: Account | None) -> str:
        """Whose associations to ask for: the account's, else the gateway's own login on
        the system (``ssh.user`` over SSH, not the name the gateway runs as here)."""
        if account is None and cluster.config.ssh is not None:
            return cluster.config.ssh.user
        return self._accounts.name(account)

    async def _shared(
        self,
        cluster: Cluster,
        kind: str,
        command: Callable[[], Command | None],
        parse: Callable[[CommandResult], list[T]],
    ) -> list[T]:
        async def query() -> list[T]:
            made = command()
            return [] if made is None else parse(await cluster.run(kind, made))

        return await self._cache.get((cluster.name, kind), cluster.config.info_cache, query)
