"""The SDK's systems methods: the configured systems and what each says about itself."""

from __future__ import annotations

from hpcgate.client._async import AsyncCore
from hpcgate.client._base import Call, request
from hpcgate.client._sync import SyncCore
from hpcgate.model.status import Association, Node, Partition, Reservation, SystemInfo


def _get(system: str, *what: str) -> Call:
    return request("GET", "systems", system, *what)


class SyncSystems(SyncCore):
    """Systems methods of :class:`~hpcgate.Client`."""

    def systems(self) -> list[SystemInfo]:
        """Every system the gateway serves, with its health."""
        return self._call(request("GET", "systems"), list[SystemInfo])

    def system(self, name: str) -> SystemInfo:
        """One system, with the caller's file roots and home directory on it."""
        return self._call(_get(name), SystemInfo)

    def partitions(self, system: str) -> list[Partition]:
        """The system's partitions (queues) and their limits."""
        return self._call(_get(system, "partitions"), list[Partition])

    def nodes(self, system: str) -> list[Node]:
        """The system's nodes: state, CPUs, memory, GPUs."""
        return self._call(_get(system, "nodes"), list[Node])

    def reservations(self, system: str) -> list[Reservation]:
        """The system's reservations."""
        return self._call(_get(system, "reservations"), list[Reservation])

    def accounts(self, system: str) -> list[Association]:
        """The accounts (and partitions) the caller may charge jobs to, with limits."""
        return self._call(_get(system, "accounts"), list[Association])


class AsyncSystems(AsyncCore):
    """Systems methods of :class:`~hpcgate.AsyncClient`."""

    async def systems(self) -> list[SystemInfo]:
        """Every system the gateway serves, with its health."""
        return await self._call(request("GET", "systems"), list[SystemInfo])

    async def system(self, name: str) -> SystemInfo:
        """One system, with the caller's file roots and home directory on it."""
        return await self._call(_get(name), SystemInfo)

    async def partitions(self, system: str) -> list[Partition]:
        """The system's partitions (queues) and their limits."""
        return await self._call(_get(system, "partitions"), list[Partition])

    async def nodes(self, system: str) -> list[Node]:
        """The system's nodes: state, CPUs, memory, GPUs."""
        return await self._call(_get(system, "nodes"), list[Node])

    async def reservations(self, system: str) -> list[Reservation]:
        """The system's reservations."""
        return await self._call(_get(system, "reservations"), list[Reservation])

    async def accounts(self, system: str) -> list[Association]:
        """The accounts (and partitions) the caller may charge jobs to, with limits."""
        return await self._call(_get(system, "accounts"), list[Association])
