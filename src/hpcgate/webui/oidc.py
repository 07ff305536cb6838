"""Signing in with an OpenID provider (``[auth.oidc.NAME]`` with a ``web_client_id``):
the authorization code flow with PKCE (S256), state and nonce.

``/ui/signin/oidc/NAME`` starts it: a pending sign-in (state, nonce, PKCE verifier) is
kept in this process, bound to this browser by a short-lived cookie of its own, and the
browser is sent to the provider's pages. The callback must bring back that cookie and
the same state; the pending sign-in is gone at its first callback, whatever it carried,
so a code or a state works at most once. The code is traded with the verifier and the
client's secret; the ID token must verify with the provider's keys, name this client and
the nonce; the access token must authenticate as any API caller's would (the gateway's
identity/ validator) and be the same user's. The access and refresh tokens stay in the
server's session; the browser holds only the session's random id.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response

from hpcgate.model.errors import HpcgateError
from hpcgate.webui.oidcflow import (
    authorization_url,
    check_id_token,
    random_value,
    same_subject,
    trade,
    web_provider,
    web_providers,
)
from hpcgate.webui.render import page
from hpcgate.webui.sessions import cookie_place
from hpcgate.webui.signin import signed_in
from hpcgate.webui.viewer import ui_gateway

router = APIRouter(prefix="/signin/oidc")
COOKIE = "hpcgate_oidc"
COOKIE_PATH = "/ui/signin/oidc"
#: A sign-in not finished this long after it started is gone; at most PENDING_MAX at once.
PENDING_SECONDS = 600
PENDING_MAX = 10_000
ProviderName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]
Value = Annotated[str | None, Query(max_length=2048)]


@dataclass(frozen=True)
class Pending:
    """A sign-in sent to the provider, not back yet."""

    provider: str
    state: str = field(default_factory=random_value, repr=False)
    nonce: str = field(default_factory=random_value, repr=False)
    verifier: str = field(default_factory=random_value, repr=False)
    started: float = field(default_factory=time.monotonic)


class PendingSignins:
    """The pending sign-ins, by the digest of their browser's cookie."""

    def __init__(self) -> None:
        self._by_key: dict[str, Pending] = {}

    def add(self, pending: Pending) -> str:
        """The cookie that takes ``pending`` back."""
        now = time.monotonic()
        for key in [k for k, p in self._by_key.items() if now - p.started > PENDING_SECONDS]:
            del self._by_key[key]
        while len(self._by_key) >= PENDING_MAX:
            del self._by_key[min(self._by_key, key=lambda k: self._by_key[k].started)]
        cookie = random_value()
        self._by_key[_key(cookie)] = pending
        return cookie

    def take(self, cookie: str | None) -> Pending | None:
        """The cookie's pending sign-in, forgotten here: it is used at most once."""
        if not cookie or len(cookie) > 128:
            return None
        pending = self._by_key.pop(_key(cookie), None)
        if pending is None or time.monotonic() - pending.started > PENDING_SECONDS:
            return None
        return pending


def _key(cookie: str) -> str:
    return hashlib.sha256(cookie.encode()).hexdigest()


def _pending(request: Request) -> PendingSignins:
    return request.app.state.pending  # type: ignore[no-any-return]


def _pending_cookie(request: Request) -> tuple[str, str]:
    return cookie_place(COOKIE, COOKIE_PATH, request.url.scheme == "https")


def _forget_pending(request: Request, answer: Response) -> None:
    name, path = _pending_cookie(request)
    secure = request.url.scheme == "https"
    answer.delete_cookie(name, path=path, secure=secure, httponly=True, samesite="lax")


@router.get("/{name}")
async def start(request: Request, name: ProviderName) -> Response:
    """To the provider's sign-in page, with this sign-in's state, nonce and challenge."""
    provider = web_provider(ui_gateway(request), name)
    pending = Pending(name)
    redirect = _callback(request, name)
    url = await authorization_url(
        provider, redirect, pending.state, pending.nonce, pending.verifier
    )
    answer = RedirectResponse(url, status_code=303)
    cookie, path = _pending_cookie(request)
    answer.set_cookie(
        cookie,
        _pending(request).add(pending),
        max_age=PENDING_SECONDS,
        path=path,
        httponly=True,
        samesite="lax",  # the provider's redirect back is a top-level GET from its site
        secure=request.url.scheme == "https",
    )
    return answer


@router.get("/{name}/callback")
async def callback(
    request: Request,
    name: ProviderName,
    code: Value = None,
    state: Value = None,
    error: Value = None,
) -> Response:
    """The provider's answer: a session for the user, or the sign-in page saying why not."""
    pending = _pending(request).take(request.cookies.get(_pending_cookie(request)[0]))
    if pending is None or pending.provider != name or state is None:
        return _refused(request, "This sign-in was not started here or has expired.")
    if not hmac.compare_digest(state.encode(), pending.state.encode()):  # bytes: any text
        return _refused(request, "This sign-in's state does not match: start again.")
    if error is not None or code is None:
        return _refused(request, f"The provider did not sign you in: {error or 'no code'}.")
    gateway = ui_gateway(request)
    provider = web_provider(gateway, name)
    redirect = _callback(request, name)
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect}
    try:
        tokens = await trade(provider, form | {"code_verifier": pending.verifier})
        claims = await check_id_token(provider, tokens.id_token, pending.nonce)
        who = await gateway.authenticate(tokens.access)
        same_subject(claims, tokens.access)
    except HpcgateError as exc:
        return _refused(request, f"The sign-in failed: {exc.detail}")
    # A page that moves on by itself: the session cookie is SameSite=Strict, which a
    # redirect still on the provider's navigation would not send.
    done = page(request, "signin_done.html", None)
    _forget_pending(request, done)
    return signed_in(request, done, tokens.access, who, name, tokens.refresh)


def _callback(request: Request, name: str) -> str:
    """The redirect URI: this gateway's callback, as the browser reached the gateway (the
    provider accepts only the URIs registered for the client)."""
    return str(request.url.replace(path=f"{COOKIE_PATH}/{name}/callback", query=""))


def _refused(request: Request, error: str) -> Response:
    providers = web_providers(ui_gateway(request))
    answer = page(request, "signin.html", None, 401, error=error, providers=providers)
    _forget_pending(request, answer)
    return answer
