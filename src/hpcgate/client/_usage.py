"""The SDK's side of the OpenAI-compatible routes: what they counted (``/api/v1/usage``),
and the settings, or a ready client, of the official ``openai`` package for ``/v1``.

``openai`` is not a dependency of the SDK: :meth:`Client.openai_client` imports it when
called (``pip install 'hpcgate-client[openai]'``)."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from hpcgate.client._async import AsyncCore
from hpcgate.client._base import BaseClient, Call, request
from hpcgate.client._errors import NotConfigured
from hpcgate.client._sync import SyncCore
from hpcgate.model.usage import Usage

if TYPE_CHECKING:
    import openai


@dataclass(frozen=True)
class OpenAISettings:
    """What an OpenAI client needs for the gateway: ``base_url`` (``<gateway>/v1``) and
    ``api_key`` (the hpcgate token)."""

    base_url: str
    api_key: str


def usage_call(
    user: str | None,
    service: str | None,
    model: str | None,
    since: datetime | None,
    until: datetime | None,
) -> Call:
    params = {"user": user, "service": service, "model": model}
    return request("GET", "usage", params={**params, "since": iso(since), "until": iso(until)})


def iso(moment: datetime | None) -> str | None:
    """``moment`` with its zone, as the API takes it; a naive one is taken as local time."""
    if moment is None:
        return None
    return (moment if moment.tzinfo is not None else moment.astimezone()).isoformat()


def settings_of(client: BaseClient) -> OpenAISettings:
    if not client.token:
        raise NotConfigured("no token: pass token, set HPCGATE_TOKEN or run 'hpcgate login'")
    return OpenAISettings(f"{client.base_url}/v1", client.token)


def openai_module() -> Any:
    """The ``openai`` package; :class:`ImportError` saying how to install it."""
    try:
        return importlib.import_module("openai")
    except ImportError as exc:
        raise ImportError(
            "the openai package is not installed: pip install 'hpcgate-client[openai]'"
            " (or pip install openai)"
        ) from exc


class SyncUsage(SyncCore):
    """Usage and ``/v1`` methods of :class:`~hpcgate.Client`."""

    def usage(
        self,
        *,
        user: str | None = None,
        service: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Usage]:
        """Requests and tokens on ``/v1`` per user, service and model, counted by the hour:
        your own, or (admin) everyone's or ``user``'s; from the hour ``since`` falls in, to
        the hours that begin before ``until`` (a naive time is local time)."""
        return self._call(usage_call(user, service, model, since, until), list[Usage])

    def openai_settings(self) -> OpenAISettings:
        """The ``base_url`` and ``api_key`` for an OpenAI-compatible client of ``/v1``."""
        return settings_of(self)

    def openai_client(self, **options: Any) -> openai.OpenAI:
        """An ``openai.OpenAI`` for the gateway's ``/v1`` with your token; ``options`` go
        to its constructor (``max_retries``, ``timeout``, ...). Needs ``openai``."""
        found = settings_of(self)
        client: openai.OpenAI = openai_module().OpenAI(
            base_url=found.base_url, api_key=found.api_key, **options
        )
        return client


class AsyncUsage(AsyncCore):
    """Usage and ``/v1`` methods of :class:`~hpcgate.AsyncClient`."""

    async def usage(
        self,
        *,
        user: str | None = None,
        service: str | None = None,
        model: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Usage]:
        """As :meth:`Client.usage`."""
        return await self._call(usage_call(user, service, model, since, until), list[Usage])

    def openai_settings(self) -> OpenAISettings:
        """As :meth:`Client.openai_settings`."""
        return settings_of(self)

    def openai_client(self, **options: Any) -> openai.AsyncOpenAI:
        """As :meth:`Client.openai_client`, an ``openai.AsyncOpenAI``."""
        found = settings_of(self)
        client: openai.AsyncOpenAI = openai_module().AsyncOpenAI(
            base_url=found.base_url, api_key=found.api_key, **options
        )
        return client
