"""``GET /api/v1/health``: liveness for anyone; the version for a user; which gateway leads
for an admin.

A load balancer's probe sends no token and gets ``{"status": "ok"}``: nothing that maps the
deployment (no host, process id or version), a constant answer with no database query. A
valid token adds the version; one with the ``admin`` scope also this gateway's name and the
leader's (:mod:`hpcgate.leadership`). A token that is wrong, expired, an API key, held for
consent or limited away from this route is answered as no token at all: the route never
answers 401, 403 or 202, so a probe that sends one keeps working. It counts against no
rate limit.
"""

from __future__ import annotations

from typing import Literal

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema

from hpcgate import __version__
from hpcgate.api.auth import noted, within_limits
from hpcgate.api.security import BEARER, OPTIONAL
from hpcgate.gateway import Gateway
from hpcgate.model.errors import HpcgateError
from hpcgate.model.principal import Principal, Scope

PATH = "/api/v1/health"
#: The whole answer without a usable token: built once, sent as is.
ALIVE = JSONResponse({"status": "ok"})

DESCRIPTION = """Answers whoever asks, `200` with `{"status": "ok"}` and nothing more: a
liveness probe needs no token. With a valid token (`Authorization: Bearer`) the answer adds
`version`; with a token that has the `admin` scope also `gateway`, `leads` and `leader`
(which of the gateways sharing one database runs the background work). A token that is
wrong, expired, an API key, waiting for consent or limited to a system, project or service
is answered as no token: never `401`, `403` or `202`. No request here counts against a rate
limit."""


class Health(BaseModel):
    """What this gateway says of itself. A field is present only when set (the route
    excludes the unset); ``None`` is never sent but for ``leader``."""

    status: Literal["ok"] = Field(description="ok: the gateway answers")
    version: str | SkipJsonSchema[None] = Field(
        None, description="The gateway's version; present with a valid token"
    )
    gateway: str | SkipJsonSchema[None] = Field(
        None,
        description="This gateway's name, its host and process id; present with an admin token",
    )
    leads: bool | SkipJsonSchema[None] = Field(
        None,
        description="Whether this gateway runs the background controllers (the service"
        " controller's starts and stops, the shared housekeeping): of the gateways on one"
        " PostgreSQL, one leads; on SQLite, always. Present with an admin token",
    )
    leader: str | None = Field(
        None,
        description="The gateway that leads, as last seen (each leader_seconds); null while"
        " none does, as when a leader has just died. Present with an admin token",
    )


def install(app: FastAPI) -> None:
    app.add_api_route(
        PATH,
        health,
        methods=["GET"],
        tags=["status"],
        summary="Liveness; with a token the version, with an admin token which gateway leads",
        description=DESCRIPTION,
        response_model=Health,
        response_model_exclude_unset=True,  # a field not set is absent, not null
        openapi_extra={"security": [dict(OPTIONAL), {BEARER: []}]},
    )


async def health(request: Request) -> Response | Health:
    presented = _bearer(request)
    if presented is None:
        return ALIVE
    gw: Gateway = request.app.state.gateway
    who = await _caller(request, gw, presented)
    if who is None:
        return ALIVE
    if not who.has(Scope.ADMIN):
        return Health(status="ok", version=__version__)
    leadership = gw.leadership
    return Health(
        status="ok",
        version=__version__,
        gateway=leadership.name,
        leads=leadership.leads(),
        leader=leadership.leader,
    )


def _bearer(request: Request) -> str | None:
    """The bearer token the request carries, if any (as :class:`~fastapi.security.HTTPBearer`
    reads it: another scheme is no token)."""
    header = request.headers.get("authorization")
    if not header:
        return None
    scheme, token = get_authorization_scheme_param(header)
    return token if scheme.lower() == "bearer" and token else None


async def _caller(request: Request, gw: Gateway, presented: str) -> Principal | None:
    """Who the token is, or None for any token that would be refused elsewhere."""
    try:
        who = await gw.authenticate(presented)
        within_limits(request.scope, who)
    except HpcgateError:
        return None
    return noted(request.scope, who)
