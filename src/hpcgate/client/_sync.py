"""The I/O core of the blocking :class:`~hpcgate.Client`: sending a call with retries.
The methods per noun (``_jobs.py``, ``_files.py``, ...) build calls in pure functions and
send them through this core; ``_clients.py`` puts them together."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self, TypeVar

import httpx

from hpcgate.client._base import BaseClient, Call, Retry, held_for_consent
from hpcgate.client._errors import GatewayUnreachable, LoginFailed
from hpcgate.client._oidc import due, refresh

T = TypeVar("T")


class SyncCore(BaseClient):
    """The connection and the sending of the blocking client."""

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retry: Retry | None = None,
        profile: str | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, token, timeout=timeout, retry=retry, profile=profile)
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=self._default_headers(),
            timeout=timeout,
            transport=transport,
        )

    def _refresh(self) -> None:
        """A new access token from the provider (or the one another process got)."""
        assert self._oidc is not None
        try:
            token, login = refresh(self._oidc, self.timeout)
        except LoginFailed:
            if not self._from_profile():
                raise
        else:
            self._renewed(token, login)
        self._http.headers["Authorization"] = f"Bearer {self.token}"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _call(self, call: Call, kind: type[T]) -> T:
        """Send ``call`` (with retries) and decode its answer as ``kind``."""
        return self._decode(self._send(call), kind)

    def _send(self, call: Call, content: Any = None) -> httpx.Response:
        """The answer to ``call`` after retries; an error answer is raised."""
        with self._stream(call, content) as response:
            response.read()
            return response

    @contextmanager
    def _stream(self, call: Call, content: Any = None) -> Iterator[httpx.Response]:
        """The answer to ``call``, its body not yet read, after retries; an error answer
        is raised. ``content`` (bytes, a file or an iterator) is sent once: a request with
        a body is retried only when no connection was made."""
        attempt, renewed = 0, False
        while True:
            if self._oidc is not None and due(self._oidc, time.time()):
                self._refresh()
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
                response = self._http.send(request, stream=True)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                pause = self.retry.delay(attempt, call, None)
                if pause is None:
                    raise GatewayUnreachable(f"{self.base_url}: {exc}") from exc
            except httpx.TransportError as exc:
                raise GatewayUnreachable(f"{self.base_url}: {exc}") from exc
            else:
                if response.status_code == 401 and self._may_renew(renewed, content):
                    response.close()
                    self._refresh()
                    renewed = True
                    continue
                pause = None if content is not None else self.retry.delay(attempt, call, response)
                if response.is_success or pause is None:
                    try:
                        if not response.is_success or held_for_consent(response):
                            response.read()
                            self._check(response, call)
                        yield response
                    finally:
                        response.close()
                    return
                response.close()
            time.sleep(pause)
            attempt += 1
