"""The hpcgate Python SDK: :class:`Client` (blocking), :class:`AsyncClient` (asyncio) and
:class:`Executor` (``concurrent.futures``), over the gateway's HTTP API."""

from hpcgate.client._base import Retry
from hpcgate.client._clients import AsyncClient, Client
from hpcgate.client._errors import (
    ClientError,
    GatewayUnreachable,
    JobFailed,
    NotConfigured,
    RateLimited,
    ValidationFailed,
    WaitTimeout,
)
from hpcgate.client._executor import Executor, JobFuture

__all__ = [
    "AsyncClient",
    "Client",
    "ClientError",
    "Executor",
    "GatewayUnreachable",
    "JobFailed",
    "JobFuture",
    "NotConfigured",
    "RateLimited",
    "Retry",
    "ValidationFailed",
    "WaitTimeout",
]
