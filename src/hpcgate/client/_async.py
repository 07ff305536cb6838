"""The I/O core of :class:`~hpcgate.AsyncClient`, the twin of ``_sync.py``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self, TypeVar

import httpx

from hpcgate.client._base import BaseClient, Call, Retry, held_for_consent
from hpcgate.client._errors import GatewayUnreachable, LoginFailed
from hpcgate.client._oidc import due, refresh_async

T = TypeVar("T")


class AsyncCore(BaseClient):
    """The connection and the sending of the asyncio client."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retry: Retry | None = None,
        profile: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout=timeout, retry=retry, profile=profile)
        self._http = httpx.AsyncClient(
            base_url=self.base_url,
            headers=self._default_headers(),
            timeout=timeout,
            transport=transport,
        )

    async def _refresh(self) -> None:
        """A new access token from the provider (or the one another process got)."""
        assert self._oidc is not None
        try:
            token, login = await refresh_async(self._oidc, self.timeout)
        except LoginFailed:
            if not self._from_profile():
                raise
        else:
            self._renewed(token, login)
        self._http.headers["Authorization"] = f"Bearer {self.token}"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _call(self, call: Call, kind: type[T]) -> T:
        return self._decode(await self._send(call), kind)

    async def _send(self, call: Call, content: Any = None) -> httpx.Response:
        async with self._stream(call, content) as response:
            await response.aread()
            return response

    @asynccontextmanager
    async def _stream(self, call: Call, content: Any = None) -> AsyncIterator[httpx.Response]:
        """As :meth:`Client._stream`."""
        attempt, renewed = 0, False
        while True:
            if self._oidc is not None and due(self._oidc, time.time()):
                await self._refresh()
            request = self._http.build_request(
                call.method,
                call.path,
                params=call.params,
                json=call.json,
                headers=dict(call.headers),
                content=content,
                timeout=self._http.timeout if call.timeout is None else call.timeout,
            )
            try:
                response = await self._http.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                pause = self.retry.delay(attempt, call, None)
                if pause is None:
                    raise GatewayUnreachable(f"{self.base_url}: {exc}") from exc
            except httpx.TransportError as exc:
                raise GatewayUnreachable(f"{self.base_url}: {exc}") from exc
            else:
                if response.status_code == 401 and self._may_renew(renewed, content):
                    await response.aclose()
                    await self._refresh()
                    renewed = True
                    continue
                pause = None if content is not None else self.retry.delay(attempt, call, response)
                if response.is_success or pause is None:
                    try:
                        if not response.is_success or held_for_consent(response):
                            await response.aread()
                            self._check(response, call)
                        yield response
                    finally:
                        await response.aclose()
                    return
                await response.aclose()
            await asyncio.sleep(pause)
            attempt += 1
