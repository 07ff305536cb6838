"""The SDK's services methods, as ``client.services``: list, read, start, scale and stop
services, follow their events, and send requests through their proxy.

A service's event stream carries no event ids and the gateway keeps no history of it (it
sends what happens from the moment it is opened, and each live replica's stderr from its
start), so a broken stream cannot be resumed: :meth:`Services.events` raises
:class:`GatewayUnreachable` when it breaks, and a new call gives the events from then on.
"""

from __future__ import annotations

import asyncio
import builtins
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from functools import cached_property
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import BaseModel
from pydantic_core import to_jsonable_python

from hpcgate.client._async import AsyncCore
from hpcgate.client._base import Call, Waiting, given, request
from hpcgate.client._errors import GatewayUnreachable
from hpcgate.client._jobs import SSE, Event, EventParser
from hpcgate.client._sync import SyncCore
from hpcgate.model.services import ReplicaState, Service, ServiceEvent, ServiceSpec

#: Characters of a proxied path sent as they are: the path's own separators and escapes
#: (``%2F`` stays an escaped slash), the query; anything else is escaped.
PROXY_SAFE = "/%:@!$&'()*+,;=~?"
Spec = ServiceSpec | Mapping[str, Any]


def list_call(project: str | None) -> Call:
    return request("GET", "services", params=given({"project": project}))


def service_call(method: str, name: str, *, json: Any = None) -> Call:
    return request(method, "services", name, json=json)


def create_call(
    name: str, system: str | None, script: str | None, spec: Spec | None, fields: Mapping[str, Any]
) -> Call:
    """The create: ``spec``'s fields (those set), then ``fields``, then the arguments."""
    start = spec.model_dump(mode="json", exclude_unset=True) if isinstance(spec, BaseModel) else {}
    if isinstance(spec, Mapping):
        start = dict(spec)
    body = {**start, **given(fields), **given({"system": system, "script": script}), "name": name}
    return request("POST", "services", json=to_jsonable_python(body))


def scale_call(name: str, min_replicas: int | None, max_replicas: int | None) -> Call:
    fields = given({"min_replicas": min_replicas, "max_replicas": max_replicas})
    return service_call("PATCH", name, json=fields)


def events_call(name: str) -> Call:
    return request("GET", "services", name, "events", headers={"Accept": SSE})


def proxy_call(
    name: str,
    method: str,
    path: str,
    *,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    json: Any = None,
    timeout: float | None = None,
) -> Call:
    """``method`` on ``path`` of the service, through its proxy. ``path`` is sent as given
    (already escaped where it needs to be); ``.`` and ``..`` segments are refused, since a
    URL would resolve them to a path outside the service."""
    target = path.lstrip("/")
    if any(part in (".", "..") for part in target.split("?")[0].split("/")):
        raise ValueError(f"path {path!r}: '.' and '..' segments do not go through the proxy")
    base = request(method.upper(), "services", name, "proxy", params=params, json=json)
    whole = f"{base.path}/{quote(target, safe=PROXY_SAFE)}"
    return replace(base, path=whole, headers=headers or {}, timeout=timeout, proxied=True)


def event_of(event: Event) -> ServiceEvent:
    return ServiceEvent.model_validate_json(event.data)


def broken(base_url: str, cause: Exception | None) -> GatewayUnreachable:
    why = f": {cause}" if cause is not None else ""
    return GatewayUnreachable(
        f"{base_url}: the service's event stream ended{why} (it cannot be resumed:"
        " open it again for the events from now on)"
    )


def ready_count(service: Service) -> int:
    return sum(replica.state is ReplicaState.READY for replica in service.replicas)


class Services:
    """``client.services`` of :class:`~hpcgate.Client`: the services you may use.

    A request through the proxy gets the service's own answer, whatever its status, as an
    :class:`httpx.Response`; only the gateway's refusals (no such service 404, no ready
    replica in time 503, a replica that failed 502 or was silent 504, ...) are raised, as
    for any other call."""

    def __init__(self, core: SyncCore) -> None:
        self._core = core

    def list(self, project: str | None = None) -> builtins.list[Service]:
        """The services declared for you and your own, with their replicas; with
        ``project``, that project's (address one as ``PROJECT~NAME``)."""
        return self._core._call(list_call(project), builtins.list[Service])

    def get(self, name: str) -> Service:
        """One service and its replicas (job id, state, node, port, requests in flight)."""
        return self._core._call(service_call("GET", name), Service)

    def create(
        self,
        name: str,
        system: str | None = None,
        script: str | None = None,
        *,
        spec: Spec | None = None,
        **fields: Any,
    ) -> Service:
        """Start a service of your own, running as you: its ``system`` and ``script`` (or
        ``script_path=``) and the other :class:`~hpcgate.model.services.ServiceSpec` fields
        as keywords, or a whole ``spec``. Only the fields given are sent. With
        ``project="p"`` it is the project's (still running as you), named ``p~NAME``."""
        return self._core._call(create_call(name, system, script, spec, fields), Service)

    def update(
        self, name: str, *, min_replicas: int | None = None, max_replicas: int | None = None
    ) -> Service:
        """Change the service's minimum and maximum replicas (a field not given keeps its
        value); a minimum above the maximum is :class:`~hpcgate.model.errors.Invalid` (422)
        and changes nothing."""
        return self._core._call(scale_call(name, min_replicas, max_replicas), Service)

    def delete(self, name: str) -> Service:
        """Stop your service: its replicas drain, their jobs are cancelled, then it is
        gone. A declared service is a :class:`~hpcgate.model.errors.Conflict`."""
        return self._core._call(service_call("DELETE", name), Service)

    def wait(self, name: str, *, ready: int = 1, timeout: float | None = None) -> Service:
        """The service once at least ``ready`` of its replicas are ready, polled with a
        growing pause; :class:`~hpcgate.client.WaitTimeout` after ``timeout`` seconds."""
        waiting = Waiting(timeout)
        while True:
            service = self.get(name)
            if ready_count(service) >= ready:
                return service
            time.sleep(waiting.pause(f"service {name} has {ready_count(service)} ready"))

    def events(self, name: str) -> Iterator[ServiceEvent]:
        """The service's events from now on, live: its replicas' changes of state
        (``kind`` ``state``) and their servers' stderr lines (``stderr``, each live
        replica's from its start). It goes on until you stop iterating; a break raises
        :class:`GatewayUnreachable`."""
        try:
            with self._core._stream(events_call(name)) as response:
                parser = EventParser()
                for line in response.iter_lines():
                    if (event := parser.feed(line)) is not None:
                        yield event_of(event)
        except httpx.TransportError as exc:
            raise broken(self._core.base_url, exc) from exc
        raise broken(self._core.base_url, None)

    def request(
        self,
        name: str,
        method: str,
        path: str = "/",
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        content: Any = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """Send ``method path`` to the service through its proxy and read its answer.
        ``content`` (bytes, a file or an iterator of bytes) or ``json`` is the body;
        ``timeout`` (seconds; default: the client's) may need to cover a cold start."""
        call = proxy_call(
            name, method, path, params=params, headers=headers, json=json, timeout=timeout
        )
        return self._core._send(call, content)

    @contextmanager
    def stream(
        self,
        name: str,
        method: str,
        path: str = "/",
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        content: Any = None,
        timeout: float | None = None,
    ) -> Iterator[httpx.Response]:
        """As :meth:`request`, the answer's body not yet read: ``with ... as answer:`` then
        ``answer.iter_bytes()`` or ``iter_lines()`` as it comes (the body of an error status
        has been read already; iterating it gives it all the same)."""
        call = proxy_call(
            name, method, path, params=params, headers=headers, json=json, timeout=timeout
        )
        with self._core._stream(call, content) as response:
            yield response

    def url(self, name: str, path: str = "/") -> str:
        """The proxy's URL of ``path`` on the service (to give another HTTP client, with
        the token as ``Authorization: Bearer``)."""
        return self._core.base_url + proxy_call(name, "GET", path).path


class AsyncServices:
    """``client.services`` of :class:`~hpcgate.AsyncClient`: as :class:`Services`,
    awaited."""

    def __init__(self, core: AsyncCore) -> None:
        self._core = core

    async def list(self, project: str | None = None) -> builtins.list[Service]:
        """As :meth:`Services.list`."""
        return await self._core._call(list_call(project), builtins.list[Service])

    async def get(self, name: str) -> Service:
        """As :meth:`Services.get`."""
        return await self._core._call(service_call("GET", name), Service)

    async def create(
        self,
        name: str,
        system: str | None = None,
        script: str | None = None,
        *,
        spec: Spec | None = None,
        **fields: Any,
    ) -> Service:
        """As :meth:`Services.create`."""
        return await self._core._call(create_call(name, system, script, spec, fields), Service)

    async def update(
        self, name: str, *, min_replicas: int | None = None, max_replicas: int | None = None
    ) -> Service:
        """As :meth:`Services.update`."""
        return await self._core._call(scale_call(name, min_replicas, max_replicas), Service)

    async def delete(self, name: str) -> Service:
        """As :meth:`Services.delete`."""
        return await self._core._call(service_call("DELETE", name), Service)

    async def wait(self, name: str, *, ready: int = 1, timeout: float | None = None) -> Service:
        """As :meth:`Services.wait`."""
        waiting = Waiting(timeout)
        while True:
            service = await self.get(name)
            if ready_count(service) >= ready:
                return service
            await asyncio.sleep(waiting.pause(f"service {name} has {ready_count(service)} ready"))

    async def events(self, name: str) -> AsyncIterator[ServiceEvent]:
        """As :meth:`Services.events`: ``async for event in client.services.events(...)``."""
        try:
            async with self._core._stream(events_call(name)) as response:
                parser = EventParser()
                async for line in response.aiter_lines():
                    if (event := parser.feed(line)) is not None:
                        yield event_of(event)
        except httpx.TransportError as exc:
            raise broken(self._core.base_url, exc) from exc
        raise broken(self._core.base_url, None)

    async def request(
        self,
        name: str,
        method: str,
        path: str = "/",
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        content: Any = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        """As :meth:`Services.request` (``content`` may also be an async iterator)."""
        call = proxy_call(
            name, method, path, params=params, headers=headers, json=json, timeout=timeout
        )
        return await self._core._send(call, content)

    @asynccontextmanager
    async def stream(
        self,
        name: str,
        method: str,
        path: str = "/",
        *,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        content: Any = None,
        timeout: float | None = None,
    ) -> AsyncIterator[httpx.Response]:
        """As :meth:`Services.stream`: ``async with``, then ``answer.aiter_bytes()``."""
        call = proxy_call(
            name, method, path, params=params, headers=headers, json=json, timeout=timeout
        )
        async with self._core._stream(call, content) as response:
            yield response

    def url(self, name: str, path: str = "/") -> str:
        """As :meth:`Services.url`."""
        return self._core.base_url + proxy_call(name, "GET", path).path


class SyncServiceMethods(SyncCore):
    """Gives :class:`~hpcgate.Client` its ``services``."""

    @cached_property
    def services(self) -> Services:
        """List, start, scale and stop services; their events; requests through the proxy."""
        return Services(self)


class AsyncServiceMethods(AsyncCore):
    """Gives :class:`~hpcgate.AsyncClient` its ``services``."""

    @cached_property
    def services(self) -> AsyncServices:
        """As :attr:`Client.services`."""
        return AsyncServices(self)
