"""The ``/ui`` application, mounted by the API's app on the same port: its routes, its
assets, its error pages and its security headers."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from hpcgate.gateway import Gateway
from hpcgate.model.errors import HpcgateError
from hpcgate.webui import (
    admin,
    chat,
    composer,
    consents,
    dashboard,
    files,
    filetasks,
    functions,
    jobs,
    oidc,
    services,
    signin,
    tokens,
    uploads,
)
from hpcgate.webui.apporigins import Passes
from hpcgate.webui.headers import SecurityHeaders
from hpcgate.webui.render import page
from hpcgate.webui.sessions import Sessions
from hpcgate.webui.viewer import SignInNeeded, session_id, sessions

PREFIX = "/ui"
STATIC = Path(__file__).parent / "static"


def create(gateway: Gateway) -> FastAPI:
    """The web interface over ``gateway``: mount it at :data:`PREFIX`."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)  # not part of the API
    app.state.gateway = gateway
    app.state.sessions = Sessions()
    app.state.pending = oidc.PendingSignins()
    app.state.passes = Passes()
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    routers = (
        signin,
        oidc,
        dashboard,
        jobs,
        composer,
        uploads,
        files,
        filetasks,
        tokens,
        consents,
        services,
        chat,
        functions,
        admin,
    )
    for module in routers:
        app.include_router(module.router)
    app.include_router(services.opened)
    app.add_exception_handler(SignInNeeded, _sign_in)
    app.add_exception_handler(HpcgateError, _error_page)
    app.add_exception_handler(RequestValidationError, _invalid_page)
    return app


def _wants_page(request: Request) -> bool:
    """A browser's navigation (not htmx, a script's upload or an event stream)."""
    return "hx-request" not in request.headers and request.method in ("GET", "POST")


async def _sign_in(request: Request, exc: Exception) -> Response:
    if _wants_page(request):  # a link followed or a form sent: to the sign-in form
        return RedirectResponse(f"{PREFIX}/signin", status_code=303)
    return Response("sign in again", status_code=401, headers={"HX-Redirect": f"{PREFIX}/signin"})


async def _error_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HpcgateError)
    session = sessions(request).get(session_id(request))
    return page(
        request,
        "error.html",
        session,
        status_code=exc.status,
        title=exc.title,
        detail=exc.detail,
    )


async def _invalid_page(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    details = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
    session = sessions(request).get(session_id(request))
    return page(
        request, "error.html", session, status_code=422, title="Invalid request", detail=details
    )
