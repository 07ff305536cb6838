"""Tokens of an OpenID provider for the SDK and the command line: the device authorization
flow of ``hpcgate login --oidc`` (RFC 8628) and the refresh of a profile's access token.

The gateway says which provider and public client to use (``GET /api/v1/auth/providers``);
the provider's own discovery document says where its endpoints are. Everything here but
:func:`discover`, :func:`device_login` and the two ``refresh`` twins is pure.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import httpx

from hpcgate.client._errors import LoginFailed
from hpcgate.client._profile import OidcLogin
from hpcgate.model.login import LoginProvider

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: A token is renewed this many seconds before it expires.
MARGIN = 30.0
MAX_ANSWER_BYTES = 256 * 1024
_LOOPBACK = frozenset({"127.0.0.1", "::1", "localhost"})


@dataclass(frozen=True)
class Endpoints:
    """Where a provider's device flow and tokens are."""

    device: str
    token: str


@dataclass(frozen=True)
class DeviceCode:
    """What the user is to do, and what the command line polls with."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    interval: float
    expires_in: float


def due(login: OidcLogin, now: float) -> bool:
    """Whether the access token is to be renewed before it is used."""
    return now >= login.expires_at - MARGIN


def refresh_form(login: OidcLogin) -> dict[str, str]:
    return {
        "grant_type": "refresh_token",
        "refresh_token": login.refresh_token,
        "client_id": login.client_id,
    }


def tokens_of(answer: httpx.Response, login: OidcLogin, now: float) -> tuple[str, OidcLogin]:
    """The access token and the renewed login a token endpoint's answer gives (a provider
    that rotates refresh tokens sends a new one; else the old one stays)."""
    document = _json(answer)
    access = document.get("access_token")
    if answer.status_code != 200 or not isinstance(access, str) or not access:
        error = document.get("error_description") or document.get("error") or answer.status_code
        raise LoginFailed(f"the provider refused the token's refresh ({error}): log in again")
    refresh = document.get("refresh_token")
    expires = document.get("expires_in")
    seconds = float(expires) if isinstance(expires, int | float) and expires > 0 else 300.0
    renewed = replace(
        login,
        refresh_token=refresh if isinstance(refresh, str) and refresh else login.refresh_token,
        expires_at=now + seconds,
    )
    return access, renewed


def refresh(login: OidcLogin, timeout: float) -> tuple[str, OidcLogin]:
    """A new access token from the provider (blocking)."""
    try:
        answer = httpx.post(login.token_endpoint, data=refresh_form(login), timeout=timeout)
    except httpx.HTTPError as exc:
        raise LoginFailed(f"the provider could not be reached: {exc}") from None
    return tokens_of(answer, login, time.time())


async def refresh_async(login: OidcLogin, timeout: float) -> tuple[str, OidcLogin]:
    """A new access token from the provider (asyncio)."""
    try:
        async with httpx.AsyncClient(timeout=timeout) as http:
            answer = await http.post(login.token_endpoint, data=refresh_form(login))
    except httpx.HTTPError as exc:
        raise LoginFailed(f"the provider could not be reached: {exc}") from None
    return tokens_of(answer, login, time.time())


def _json(answer: httpx.Response) -> dict[str, Any]:
    if len(answer.content) > MAX_ANSWER_BYTES:
        return {}
    try:
        document = answer.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def _checked_url(url: object, issuer: str, what: str) -> str:
    """An endpoint of the issuer's: https, or http on loopback for a loopback issuer."""
    if not isinstance(url, str):
        raise LoginFailed(f"the provider {issuer} names no {what}")
    parts, home = urlsplit(url), urlsplit(issuer)
    plain_ok = home.scheme == "http" and home.hostname in _LOOPBACK
    if parts.scheme != "https" and not (plain_ok and parts.hostname in _LOOPBACK):
        raise LoginFailed(f"the provider's {what} {url!r} is not https")
    return url


def discover(provider: LoginProvider, timeout: float) -> Endpoints:
    """The provider's device and token endpoints, from its discovery document."""
    issuer = _checked_url(provider.issuer, provider.issuer, "issuer")
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        document = _json(httpx.get(url, timeout=timeout))
    except httpx.HTTPError as exc:
        raise LoginFailed(f"the provider could not be reached: {exc}") from None
    if document.get("issuer") != provider.issuer:
        raise LoginFailed(f"the discovery document at {url} names another issuer")
    device = document.get("device_authorization_endpoint")
    return Endpoints(
        _checked_url(device, issuer, "device authorization endpoint"),
        _checked_url(document.get("token_endpoint"), issuer, "token endpoint"),
    )


def device_code(document: dict[str, Any]) -> DeviceCode:
    """The device authorization answer (RFC 8628, section 3.2)."""
    try:
        interval = document.get("interval", 5)
        return DeviceCode(
            str(document["device_code"]),
            str(document["user_code"]),
            str(document["verification_uri"]),
            document.get("verification_uri_complete"),
            min(max(float(interval), 1.0), 60.0),
            min(float(document.get("expires_in", 600)), 3600.0),
        )
    except (KeyError, TypeError, ValueError):
        raise LoginFailed("the provider's device authorization answer is incomplete") from None


def device_login(
    provider: LoginProvider,
    tell: Callable[[DeviceCode], None],
    timeout: float = 30.0,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[str, OidcLogin]:
    """The device flow: ask for a code, ``tell`` the user where to enter it, poll until
    the user approved (or denied, or the code expired); the access token and its refresh."""
    endpoints = discover(provider, timeout)
    form = {"client_id": provider.client_id, "scope": provider.scope}
    try:
        started = httpx.post(endpoints.device, data=form, timeout=timeout)
    except httpx.HTTPError as exc:
        raise LoginFailed(f"the provider could not be reached: {exc}") from None
    if started.status_code != 200:
        raise LoginFailed(f"the provider refused the device login: {started.text[:300]}")
    code = device_code(_json(started))
    tell(code)
    answer = _poll(endpoints.token, provider.client_id, code, timeout, sleep)
    login = OidcLogin(provider.issuer, provider.client_id, endpoints.token, "", 0.0)
    access, login = tokens_of(answer, login, time.time())
    if not login.refresh_token:
        raise LoginFailed("the provider gave no refresh token (is offline_access allowed?)")
    return access, login


def _poll(
    endpoint: str, client_id: str, code: DeviceCode, timeout: float, sleep: Callable[[float], None]
) -> httpx.Response:
    """Polls the token endpoint at the provider's pace (RFC 8628, section 3.5)."""
    form = {"grant_type": DEVICE_GRANT, "device_code": code.device_code, "client_id": client_id}
    interval, deadline = code.interval, time.monotonic() + code.expires_in
    while time.monotonic() < deadline:
        sleep(interval)
        try:
            answer = httpx.post(endpoint, data=form, timeout=timeout)
        except httpx.HTTPError as exc:
            raise LoginFailed(f"the provider could not be reached: {exc}") from None
        error = _json(answer).get("error")
        if answer.status_code == 200 or error not in ("authorization_pending", "slow_down"):
            if answer.status_code != 200:
                raise LoginFailed(f"the login was not approved ({error or answer.status_code})")
            return answer
        interval += 5.0 if error == "slow_down" else 0.0
    raise LoginFailed("the code expired before the login was approved")


def providers(url: str, timeout: float) -> list[LoginProvider]:
    """The providers gateway ``url`` says its command line may log in through."""
    try:
        answer = httpx.get(f"{url.rstrip('/')}/api/v1/auth/providers", timeout=timeout)
    except httpx.HTTPError as exc:
        raise LoginFailed(f"{url}: {exc}") from None
    if answer.status_code != 200:
        raise LoginFailed(f"{url} does not say which provider to log in through")
    listed = answer.json() if len(answer.content) <= MAX_ANSWER_BYTES else []
    return [LoginProvider.model_validate(item) for item in listed if isinstance(item, dict)]
