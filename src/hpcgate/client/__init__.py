"""The hpcgate Python SDK: :class:`Client` (blocking), :class:`AsyncClient` (asyncio) and
:class:`Executor` (batch jobs as ``concurrent.futures``), with ``client.functions`` and
``@client.function`` (Python functions run remotely) and :class:`FunctionExecutor`, over the
gateway's HTTP API."""

from hpcgate.client._base import Retry
from hpcgate.client._clients import AsyncClient, Client
from hpcgate.client._errors import (
    ClientError,
    FunctionFailed,
    GatewayUnreachable,
    JobFailed,
    LoginFailed,
    NotConfigured,
    RateLimited,
    SealBroken,
    ValidationFailed,
    WaitTimeout,
)
from hpcgate.client._executor import Executor, JobFuture
from hpcgate.client._functions import (
    AsyncFunctions,
    AsyncInvoked,
    Error,
    FunctionEvent,
    Functions,
    Invoked,
    Output,
    Result,
)
from hpcgate.client._remote import (
    AsyncRemoteFunction,
    FunctionExecutor,
    FunctionFuture,
    RemoteFunction,
)
from hpcgate.client._services import AsyncServices, Services
from hpcgate.client._usage import OpenAISettings

__all__ = [
    "AsyncClient",
    "AsyncFunctions",
    "AsyncInvoked",
    "AsyncRemoteFunction",
    "AsyncServices",
    "Client",
    "ClientError",
    "Error",
    "Executor",
    "FunctionEvent",
    "FunctionExecutor",
    "FunctionFailed",
    "FunctionFuture",
    "Functions",
    "GatewayUnreachable",
    "Invoked",
    "JobFailed",
    "JobFuture",
    "LoginFailed",
    "NotConfigured",
    "OpenAISettings",
    "Output",
    "RateLimited",
    "RemoteFunction",
    "Result",
    "Retry",
    "SealBroken",
    "Services",
    "ValidationFailed",
    "WaitTimeout",
]
