"""The SDK's systems methods: pure call builders, and the twins that send them."""

from __future__ import annotations

from hpcgate.client._async import AsyncCore
from hpcgate.client._sync import SyncCore


class SyncSystems(SyncCore):
    """Systems methods of :class:`~hpcgate.Client`."""


class AsyncSystems(AsyncCore):
    """Systems methods of :class:`~hpcgate.AsyncClient`."""
