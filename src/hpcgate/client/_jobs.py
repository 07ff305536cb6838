"""The SDK's jobs methods: pure call builders, and the twins that send them."""

from __future__ import annotations

from hpcgate.client._async import AsyncCore
from hpcgate.client._sync import SyncCore


class SyncJobs(SyncCore):
    """Jobs methods of :class:`~hpcgate.Client`."""


class AsyncJobs(AsyncCore):
    """Jobs methods of :class:`~hpcgate.AsyncClient`."""
