"""The SDK's tasks methods: pure call builders, and the twins that send them."""

from __future__ import annotations

from hpcgate.client._async import AsyncCore
from hpcgate.client._sync import SyncCore


class SyncTasks(SyncCore):
    """Tasks methods of :class:`~hpcgate.Client`."""


class AsyncTasks(AsyncCore):
    """Tasks methods of :class:`~hpcgate.AsyncClient`."""
