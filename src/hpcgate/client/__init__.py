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
from hpcgate.client._services import AsyncServices, Services
from hpcgate.client._usage import OpenAISettings

__all__ = [
    "AsyncClient",
    "AsyncServices",
    "Client",
    "ClientError",
    "Executor",
    "GatewayUnreachable",
    "JobFailed",
    "JobFuture",
    "NotConfigured",
    "OpenAISettings",
    "RateLimited",
    "Retry",
    "Services",
    "ValidationFailed",
    "WaitTimeout",
]
