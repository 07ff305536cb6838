"""The SDK's files methods: pure call builders, and the twins that send them."""

from __future__ import annotations

from hpcgate.client._async import AsyncCore
from hpcgate.client._sync import SyncCore


class SyncFiles(SyncCore):
    """Files methods of :class:`~hpcgate.Client`."""


class AsyncFiles(AsyncCore):
    """Files methods of :class:`~hpcgate.AsyncClient`."""
