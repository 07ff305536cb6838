"""The FastAPI application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hpcgate import __version__
from hpcgate.api import (
    agent,
    agent_tokens,
    audit,
    consents,
    docs,
    files,
    functions,
    health,
    jobs,
    login,
    openai,
    openapi,
    openapi_errors,
    problems,
    projects,
    security,
    services,
    systems,
    tasks,
    tokens,
    usage,
)
from hpcgate.api.auth import Caller, RateLimitFields
from hpcgate.api.forwarding import Forwarding
from hpcgate.api.limits import BodyLimit
from hpcgate.config import Settings
from hpcgate.gateway import Gateway
from hpcgate.model.principal import Scope
from hpcgate.webui import app as webui
from hpcgate.webui.apphosts import AppHosts

DESCRIPTION = """
hpcgate lets applications, services and people use HPC systems over HTTP: submit and
follow batch jobs, read their output live, watch their state, without SSH keys.

Authenticate with `Authorization: Bearer <token>`: an hpcgate token (create one with
`hpcgate token create`) or an access token of an OpenID provider the gateway trusts.
Every error is `application/problem+json` (RFC 9457).
"""


def create_app(settings: Settings, gateway: Gateway | None = None) -> FastAPI:
    """The app for these settings; the gateway starts and stops with the app's lifespan."""
    gw = gateway or Gateway(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await gw.start()
        try:
            yield
        finally:
            await gw.stop()

    app = FastAPI(
        title="hpcgate",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # docs.install serves it with local assets
        redoc_url=None,
    )
    app.state.gateway = gw
    # The last added runs first: BodyLimit bounds what Forwarding forwards; RateLimitFields
    # sees the forwarded answers too (their quotas, their streams to give back).
    app.add_middleware(Forwarding, gateway=gw)
    app.add_middleware(RateLimitFields, gateway=gw)
    ui = webui.create(gw)
    if settings.ui.apps_domain:  # a request for an app's host goes there, never on
        app.add_middleware(AppHosts, ui=ui, domain=settings.ui.apps_domain)
    app.add_middleware(BodyLimit, max_bytes=settings.max_request_bytes)
    app.add_middleware(audit.AuditTrail, log=gw.audit)  # outermost: sees every refusal too
    problems.install(app)
    openapi.install(app, openapi_errors.declare)
    security.install(app, settings.auth.oidc)
    consents.install(app, settings.consent)
    docs.install(app)
    routers = (
        agent.router,
        agent_tokens.router,
        systems.router,
        jobs.router,
        files.router,
        tasks.router,
        tokens.router,
        consents.router,
        projects.router,
    )
    for router in (*routers, services.router, functions.router, usage.router, openai.router):
        app.include_router(router)
    app.mount(webui.PREFIX, ui, name="webui")  # the web interface, /ui
    app.include_router(audit.router)
    app.include_router(login.router)
    health.install(app)
    app.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        tags=["status"],
        summary="Prometheus metrics (admin scope)",
        response_class=PlainTextResponse,  # the OpenAPI document says text/plain, as sent
        responses=problems.responses(401, 403),
    )
    return app


async def metrics(who: Caller, request: Request) -> Response:
    who.require(Scope.ADMIN)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
