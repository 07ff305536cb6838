"""Who is looking: the session's token turned into the same :class:`Principal` the API
uses, checked on every request; and the CSRF check on every state change."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request

from hpcgate.gateway import Gateway
from hpcgate.model.errors import Forbidden, HpcgateError, Unauthenticated
from hpcgate.model.principal import Principal
from hpcgate.target import Target
from hpcgate.webui.forms import is_form, read_form
from hpcgate.webui.oidcflow import renew, web_provider
from hpcgate.webui.sessions import COOKIE, Session, Sessions, cookie_place

CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SignInNeeded(Exception):
    """No session, or its token no longer authenticates: the browser must sign in."""


@dataclass(frozen=True)
class Viewer:
    """The signed-in caller of one request."""

    who: Principal
    session: Session
    gateway: Gateway

    def target(self, system: str) -> Target:
        return self.gateway.target(self.who, system)


def ui_gateway(request: Request) -> Gateway:
    return request.app.state.gateway  # type: ignore[no-any-return]


def sessions(request: Request) -> Sessions:
    return request.app.state.sessions  # type: ignore[no-any-return]


def session_cookie(request: Request) -> tuple[str, str]:
    """The name and path of the session's cookie for this request's scheme."""
    return cookie_place(COOKIE, "/ui", request.url.scheme == "https")


def session_id(request: Request) -> str | None:
    return request.cookies.get(session_cookie(request)[0])


def check_origin(request: Request) -> None:
    """A state change must come from a page of this gateway: a browser sends ``Origin``
    with every such request, and it must name this host."""
    origin = request.headers.get("origin")
    if origin is not None and urlsplit(origin).netloc != request.headers.get("host"):
        raise Forbidden("this request came from another site")


async def viewer(request: Request) -> Viewer:
    """The caller, for any /ui route but sign-in; a state change also needs its CSRF token
    (:func:`require_csrf`), so no route can forget it."""
    store = sessions(request)
    presented = session_id(request)
    session = store.get(presented)
    if session is None:
        raise SignInNeeded
    gateway = ui_gateway(request)
    try:
        who = await _authenticate(gateway, session)
    except Unauthenticated:
        store.close(presented)  # revoked or expired: this session is over
        raise SignInNeeded from None
    if who.limited:  # never signed in (see signin): a session holds only full tokens
        store.close(presented)
        raise SignInNeeded
    if request.method not in SAFE_METHODS:
        await require_csrf(request, session)
    return Viewer(who, session, gateway)


async def session_principal(gateway: Gateway, session: Session) -> Principal:
    """The session's token's principal (renewed as a page's would be); Unauthenticated
    once it no longer authenticates."""
    return await _authenticate(gateway, session)


async def _authenticate(gateway: Gateway, session: Session) -> Principal:
    """The session's token's principal; a provider's expired access token is renewed once
    with the session's refresh token (the provider may refuse: then Unauthenticated)."""
    try:
        return await gateway.authenticate(session.token)
    except Unauthenticated:
        if session.provider is None or session.refresh is None:
            raise
    async with session.renewal:  # a request that waited here finds the token renewed
        try:
            return await gateway.authenticate(session.token)
        except Unauthenticated:
            return await _renew(gateway, session, session.provider, session.refresh)


async def _renew(gateway: Gateway, session: Session, name: str, refresh: str) -> Principal:
    try:
        renewed = await renew(web_provider(gateway, name), refresh)
    except HpcgateError:
        raise Unauthenticated("the session's refresh token was refused") from None
    who = await gateway.authenticate(renewed.access)
    if who.user != session.user:
        raise Unauthenticated("the renewed token is another user's")
    session.token, session.refresh = renewed.access, renewed.refresh
    return who


async def require_csrf(request: Request, session: Session) -> None:
    """Forbidden unless a state change comes from this site and carries the session's CSRF
    token: in the ``X-CSRF-Token`` header (htmx, uploads) or a form's ``csrf`` field."""
    check_origin(request)
    if session.csrf_matches(request.headers.get(CSRF_HEADER)):
        return
    presented = (await read_form(request)).get("csrf") if is_form(request) else None
    if not session.csrf_matches(presented):
        raise Forbidden("the form is stale or came from elsewhere: reload the page")


ViewerDep = Annotated[Viewer, Depends(viewer)]
