"""What :class:`~hpcgate.Client` and :class:`~hpcgate.AsyncClient` share: everything that
does no I/O. A method of either twin builds a :class:`Call` here, sends it (its only own
code), and turns the answer into a model or an exception here."""

from __future__ import annotations

import contextlib
import email.utils
import random
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, TypeAdapter

from hpcgate import __version__
from hpcgate.client._errors import NotConfigured, WaitTimeout, from_problem
from hpcgate.client._profile import OidcLogin, Profile, load, renew, resolve
from hpcgate.model.consents import CONSENT_HEADER, ConsentAnswer, ConsentPending
from hpcgate.model.errors import PROBLEM_BASE, HpcgateError

T = TypeVar("T")
API = "/api/v1"
RETRY_STATUSES = frozenset({429, 502, 503, 504})
NOT_PROCESSED = frozenset({429, 503})  # the gateway refused before acting: safe to resend
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


@dataclass(frozen=True)
class Call:
    """One request, before it is sent."""

    method: str
    path: str
    params: Mapping[str, Any] | None = None
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    #: Seconds this request may take (None: the client's ``timeout``).
    timeout: float | None = None
    #: Sent through a service's proxy: an answer is the service's own, whatever its status,
    #: unless it is a problem document of the gateway's (see :func:`gateways_own`).
    proxied: bool = False

    @property
    def resendable(self) -> bool:
        """Whether a lost answer may be asked for again without doing the work twice."""
        return self.method in IDEMPOTENT or "Idempotency-Key" in self.headers


def request(
    method: str,
    *segments: str,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    headers: Mapping[str, str] | None = None,
) -> Call:
    """The request ``method /api/v1/<segments>``: each segment escaped as one path segment
    (an id or a name never reaches another route), query parameters that are None left
    out. Every call of the SDK is built here."""
    path = "/".join([API, *(quote(segment, safe="") for segment in segments)])
    if params is not None:
        params = {key: value for key, value in params.items() if value is not None}
    return Call(method, path, params=params, json=json, headers=headers or {})


def given(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a request body that the caller set (not None): the gateway's defaults
    apply to the others."""
    return {key: value for key, value in fields.items() if value is not None}


@dataclass(frozen=True)
class Retry:
    """When to send a request again: on 429, 502, 503 and 504 (502 and 504 only when
    :attr:`Call.resendable`) and when no connection could be made, up to ``attempts``
    times in all, waiting ``Retry-After`` when the gateway says, else an exponential
    backoff with jitter from ``backoff`` seconds, capped at ``max_wait``."""

    attempts: int = 5
    backoff: float = 0.5
    max_wait: float = 30.0

    def delay(self, attempt: int, call: Call, response: httpx.Response | None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; None: do not retry."""
        if attempt + 1 >= self.attempts:
            return None
        if response is not None:
            if response.status_code not in RETRY_STATUSES:
                return None
            if call.proxied and not is_problem(response):
                return None  # the service's own answer: it is the caller's to judge
            if response.status_code not in NOT_PROCESSED and not call.resendable:
                return None
            told = retry_after(response.headers.get("Retry-After"))
            if told is not None:
                return min(told, self.max_wait)
        pause: float = min(self.max_wait, self.backoff * 2.0**attempt)
        return pause * (0.5 + random.random() / 2)


def is_problem(response: httpx.Response) -> bool:
    """Whether the answer says it is a problem document (by its headers only)."""
    kind: str = response.headers.get("Content-Type", "")
    return kind.split(";")[0].strip().lower() == "application/problem+json"


def gateways_own(response: httpx.Response) -> bool:
    """Whether a read error answer to a proxied request is the gateway's refusal (a problem
    document of hpcgate's own ``type``), not the service's answer passed on."""
    if not is_problem(response):
        return False
    try:
        document = response.json()
    except ValueError:
        return False
    kind = document.get("type") if isinstance(document, dict) else None
    return isinstance(kind, str) and kind.startswith(PROBLEM_BASE)


def retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds: a number of seconds or an HTTP date; None if absent."""
    if value is None:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def backoff(first: float = 0.5, factor: float = 1.5, cap: float = 10.0) -> Iterator[float]:
    """The pauses between polls of a job that is still running: 0.5 s, 0.75 s, ... 10 s."""
    pause = first
    while True:
        yield pause
        pause = min(cap, pause * factor)


class Waiting:
    """The pauses of one wait for something to end: :func:`backoff`, cut short so that the
    last poll comes at ``timeout`` seconds (None: wait for ever)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self._end = None if timeout is None else time.monotonic() + timeout
        self._pauses = backoff()

    def pause(self, still: str) -> float:
        """Seconds to sleep before the next poll; :class:`WaitTimeout` once the time is up,
        its message ``still`` (what has not ended yet)."""
        pause = next(self._pauses)
        if self._end is None:
            return pause
        left = self._end - time.monotonic()
        if left <= 0:
            raise WaitTimeout(f"{still} after {self.timeout:g} s")
        return min(pause, left)


class BaseClient:
    """Settings and pure logic of both clients.

    ``base_url`` and ``token`` default to ``HPCGATE_URL`` and ``HPCGATE_TOKEN``, then to the
    profile (``hpcgate login`` writes it); ``timeout`` is per request, in seconds.
    """

    def __init__(
        self,
        base_url: str | None = None,
        token: str | None = None,
        *,
        timeout: float = 30.0,
        retry: Retry | None = None,
        profile: str | None = None,
    ) -> None:
        found: Profile = resolve(base_url, token, profile)
        if not found.url:
            raise NotConfigured(
                "no gateway URL: pass base_url, set HPCGATE_URL or run 'hpcgate login'"
            )
        self.base_url = found.url.rstrip("/")
        self.token = found.token
        self.timeout = timeout
        self.retry = retry or Retry()
        # A token of ``hpcgate login --oidc``: renewed before it expires and on a 401, once.
        self._oidc: OidcLogin | None = found.oidc
        self._profile_name = found.name

    def _may_renew(self, renewed: bool, content: Any) -> bool:
        """Whether a 401 is worth one refresh of the token and one more try (a streamed
        body cannot be sent twice)."""
        return (
            not renewed
            and self._oidc is not None
            and (content is None or isinstance(content, bytes))
        )

    def _renewed(self, token: str, login: OidcLogin) -> None:
        """Use a refreshed token from now on, and keep it in the profile it came from."""
        old, self.token, self._oidc = self.token, token, login
        if self._profile_name is not None and old is not None:
            with contextlib.suppress(OSError, ValueError):
                renew(self._profile_name, old, token, login)

    def _from_profile(self) -> bool:
        """Take the profile's token if another process refreshed it meanwhile (the refresh
        token this client held is then spent); whether there was one."""
        if self._profile_name is None:
            return False
        try:
            saved = load(self._profile_name)
        except (KeyError, OSError, ValueError):
            return False
        if not saved.token or saved.oidc is None or saved.token == self.token:
            return False
        self.token, self._oidc = saved.token, saved.oidc
        return True

    def _default_headers(self) -> dict[str, str]:
        headers = {"User-Agent": f"hpcgate-python/{__version__}"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    @staticmethod
    def _new_idempotency_key() -> str:
        return uuid.uuid4().hex

    @staticmethod
    def _check(response: httpx.Response, call: Call | None = None) -> None:
        """Raise the problem an error answer carries, ConsentPending for a request held
        for its user's consent; nothing for a success, nor for a service's own answer to a
        proxied ``call``. The body must have been read."""
        if held_for_consent(response) and not (call is not None and call.proxied):
            raise ConsentPending(ConsentAnswer.model_validate_json(response.content))
        if response.is_success or response.status_code == 304:
            return
        if call is not None and call.proxied and not gateways_own(response):
            return
        raise _error_of(response)

    @staticmethod
    def _decode(response: httpx.Response, kind: type[T]) -> T:
        """The answer's JSON as ``kind`` (a model, or a type such as ``list[Job]``)."""
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            return kind.model_validate_json(response.content)
        return TypeAdapter(kind).validate_json(response.content)


def held_for_consent(response: httpx.Response) -> bool:
    """Whether the answer says the request was held for its user's consent."""
    return response.status_code == 202 and CONSENT_HEADER in response.headers


def _error_of(response: httpx.Response) -> HpcgateError:
    try:
        document = response.json()
    except ValueError:
        document = {}
    if not isinstance(document, dict):
        document = {}
    if not document.get("detail") and not document.get("title"):
        document = {**document, "detail": response.text[:500] or response.reason_phrase}
    error = from_problem(response.status_code, document)
    error.retry_after = retry_after(response.headers.get("Retry-After"))
    return error
