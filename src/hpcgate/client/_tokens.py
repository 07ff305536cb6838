"""The SDK's tokens methods: pure call builders, and the twins that send them."""

from __future__ import annotations

from hpcgate.client._async import AsyncCore
from hpcgate.client._sync import SyncCore


class SyncTokens(SyncCore):
    """Tokens methods of :class:`~hpcgate.Client`."""


class AsyncTokens(AsyncCore):
    """Tokens methods of :class:`~hpcgate.AsyncClient`."""
