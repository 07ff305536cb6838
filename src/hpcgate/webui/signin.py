"""Signing in by pasting an hpcgate token (or a trusted provider's access token), and out.
(Signing in with a provider's own pages: webui/oidc.py.)"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from hpcgate.model.errors import HpcgateError
from hpcgate.model.principal import Principal, Scope
from hpcgate.webui.forms import read_form
from hpcgate.webui.oidcflow import revoke, web_provider, web_providers
from hpcgate.webui.render import page
from hpcgate.webui.sessions import MAX_AGE
from hpcgate.webui.viewer import (
    ViewerDep,
    check_origin,
    session_cookie,
    session_id,
    sessions,
    ui_gateway,
)

router = APIRouter()
TOKEN_MAX = 8192


@router.get("/", include_in_schema=False)
async def home() -> Response:
    return RedirectResponse("/ui/dashboard", status_code=303)


@router.get("/signin")
async def signin_page(request: Request) -> Response:
    return _form(request, None)


def _form(request: Request, error: str | None, status: int = 200) -> Response:
    providers = web_providers(ui_gateway(request))
    return page(request, "signin.html", None, status, error=error, providers=providers)


@router.post("/signin")
async def signin(request: Request) -> Response:
    """A token that authenticates opens a session; anything else shows the form again."""
    check_origin(request)  # SameSite=Strict keeps the cookie; this keeps others' forms out
    token = (await read_form(request)).get("token").strip()
    try:
        if not token or len(token) > TOKEN_MAX:
            raise ValueError
        who = await ui_gateway(request).authenticate(token)
    except (HpcgateError, ValueError):
        error = "That token is not valid (expired, revoked, or mistyped)."
        return _form(request, error, status=401)
    if who.limited:  # its limits are the API's to check: the pages would reach past them
        error = "A limited token (to a system, a project, a service or reading) cannot sign in."
        return _form(request, error, status=403)
    return signed_in(request, RedirectResponse("/ui/dashboard", status_code=303), token, who)


def signed_in(
    request: Request,
    answer: Response,
    token: str,
    who: Principal,
    provider: str | None = None,
    refresh: str | None = None,
) -> Response:
    """``answer`` with the cookie of a new session for ``token`` (which authenticated as
    ``who``)."""
    opened, _ = sessions(request).open(token, who.user, who.has(Scope.ADMIN), provider, refresh)
    name, path = session_cookie(request)
    answer.set_cookie(
        name,
        opened,
        max_age=MAX_AGE,
        path=path,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return answer


@router.post("/signout")
async def signout(request: Request, viewer: ViewerDep) -> Response:
    """The session ends here; one opened with a provider also has its refresh token revoked
    there (if the provider cannot be reached, the token stays unused until it expires)."""
    sessions(request).close(session_id(request))
    session = viewer.session
    if session.provider is not None and session.refresh is not None:
        await revoke(web_provider(viewer.gateway, session.provider), session.refresh)
    answer = RedirectResponse("/ui/signin", status_code=303)
    name, path = session_cookie(request)
    secure = request.url.scheme == "https"
    answer.delete_cookie(name, path=path, secure=secure, httponly=True, samesite="strict")
    return answer
