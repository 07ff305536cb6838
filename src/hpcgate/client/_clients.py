"""The two clients, put together from the methods of each noun."""

from __future__ import annotations

from hpcgate.client._consents import AsyncConsents, SyncConsents
from hpcgate.client._functions import AsyncFunctionMethods, SyncFunctionMethods
from hpcgate.client._jobs import AsyncJobs, SyncJobs
from hpcgate.client._services import AsyncServiceMethods, SyncServiceMethods
from hpcgate.client._systems import AsyncSystems, SyncSystems
from hpcgate.client._tasks import AsyncTasks, SyncTasks
from hpcgate.client._tokens import AsyncTokens, SyncTokens
from hpcgate.client._uploads import AsyncTransfers, SyncTransfers
from hpcgate.client._usage import AsyncUsage, SyncUsage


class Client(
    SyncSystems,
    SyncJobs,
    SyncTransfers,
    SyncTasks,
    SyncTokens,
    SyncConsents,
    SyncServiceMethods,
    SyncFunctionMethods,
    SyncUsage,
):
    """hpcgate from Python, blocking. Use it in a ``with`` block, or call :meth:`close`.

    >>> with Client("https://hpc.example.org", token="...") as hpc:
    ...     job = hpc.submit("cluster", script="#!/bin/bash\\nhostname\\n")
    ...     hpc.wait("cluster", job.id, timeout=600)
    ...     hpc.services.request("llama", "GET", "/health")
    ...     hpc.functions.call("hello", {"who": "you"})

    ``base_url`` and ``token`` default to ``HPCGATE_URL`` and ``HPCGATE_TOKEN``, then to the
    profile that ``hpcgate login`` saved. Errors are the server's own exception classes
    (:mod:`hpcgate.model.errors`) plus the SDK's (:mod:`hpcgate.client`).
    """


class AsyncClient(
    AsyncSystems,
    AsyncJobs,
    AsyncTransfers,
    AsyncTasks,
    AsyncTokens,
    AsyncConsents,
    AsyncServiceMethods,
    AsyncFunctionMethods,
    AsyncUsage,
):
    """The asyncio twin of :class:`Client`: the same methods, awaited; ``async with``."""
