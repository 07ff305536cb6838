"""Every error answered as RFC 9457 ``application/problem+json``."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.routing import Match

from hpcgate.api.openai_format import is_openai, openai_error
from hpcgate.model.consents import CONSENT_HEADER, ConsentPending
from hpcgate.model.errors import PROBLEM_BASE, DatabaseBusy, HpcgateError

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where the error is: body, query, header, path...")
    msg: str
    type: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    type: str = Field(description="A URI naming the kind of problem")
    title: str
    status: int
    detail: str | None = None
    errors: list[FieldError] | None = Field(None, description="Field errors, on 422")


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str | None,
    headers: Mapping[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_BASE + slug, "title": title, "status": status}
    if detail is not None:
        body["detail"] = detail
    body.update(extra)
    answer_headers = dict(headers or {})
    if status == 401:
        answer_headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=answer_headers)


async def _hpcgate_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HpcgateError)
    return problem_of(exc, openai=is_openai(request.url.path))


def problem_of(exc: HpcgateError, openai: bool = False, socket: bool = False) -> JSONResponse:
    """The problem document of an hpcgate error; on the OpenAI-compatible routes
    (``openai``), OpenAI's error document instead. A refused WebSocket handshake
    (``socket``) and a ``/v1`` request held for consent are refused 403, not answered
    202: a WebSocket client cannot read a 202 and OpenAI's clients read it as success."""
    if isinstance(exc, ConsentPending):  # not a problem: the request waits for its user
        if openai or socket:
            return consent_refused(exc, openai)
        return held(exc)
    if exc.status >= 500:
        log.warning("%s: %s", type(exc).__name__, exc.detail)
    headers = dict(exc.headers)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(math.ceil(exc.retry_after))
    if openai:
        code = exc.extra.get("code") or exc.slug
        return openai_error(exc.status, exc.detail, code, headers, exc.extra.get("param"))
    return problem(exc.status, exc.slug, exc.title, exc.detail, headers, **exc.extra)


def held(pending: ConsentPending) -> JSONResponse:
    """The 202 answer to a request held for its user's consent: the consent request (and
    a new token's secret), with its id in a header and where to read it in Location."""
    consent = pending.answer.consent
    headers = {CONSENT_HEADER: consent.id, "Location": f"/api/v1/consents/{consent.id}"}
    body = pending.answer.model_dump(mode="json")
    if body["token"] is None:
        del body["token"]
    return JSONResponse(body, status_code=202, headers=headers)


def consent_refused(pending: ConsentPending, openai: bool) -> JSONResponse:
    """The 403 of a credential held for consent where a 202 would be misread: on ``/v1``
    in OpenAI's error format (code ``consent_pending``), on a WebSocket a problem; its
    message names the consent request and where its user approves it."""
    consent = pending.answer.consent
    approve = f"/api/v1/consents/{consent.id}/approve"
    detail = f"held for its user's consent, nothing was done: {pending.detail}, or POST {approve}"
    headers = {CONSENT_HEADER: consent.id}
    if openai:
        return openai_error(403, detail, "consent_pending", headers)
    extra = {"consent": consent.id, "approve": approve}
    return problem(403, pending.slug, pending.title, detail, headers, **extra)


#: Retry-After of a request refused because the database's pool had no connection for it.
POOL_RETRY_SECONDS = 2


async def _pool_timeout(request: Request, exc: Exception) -> JSONResponse:
    """SQLAlchemy's pool exhausted (every connection taken for its whole wait): the request
    did nothing and may be retried, a 503 with Retry-After rather than an unexpected 500."""
    busy = DatabaseBusy(
        "the gateway's database connections are all in use: retry shortly",
        retry_after=POOL_RETRY_SECONDS,
    )
    return problem_of(busy, openai=is_openai(request.url.path))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
    first = errors[0] if errors else None
    detail = f"{'.'.join(map(str, first['loc']))}: {first['msg']}" if first else None
    if _not_sent_as_json(request, errors):
        detail = NOT_JSON
    return problem(422, "validation-error", "The request is not valid", detail, errors=errors)


NOT_JSON = (
    "body: the body must be JSON sent with 'Content-Type: application/json'"
    " (curl: add -H 'Content-Type: application/json'; -d alone sends a form)"
)


def _not_sent_as_json(request: Request, errors: list[dict[str, Any]]) -> bool:
    """A JSON body sent without its content type (curl -d): FastAPI then reads no body."""
    kind = request.headers.get("content-type", "")
    return "json" not in kind and any(error["loc"] == ["body"] for error in errors)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    slug = {404: "not-found", 405: "method-not-allowed"}.get(exc.status_code, "http-error")
    title = str(exc.detail) if isinstance(exc.detail, str) else "HTTP error"
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed(request))
    if is_openai(request.url.path):
        return openai_error(exc.status_code, title, slug, headers)
    return problem(exc.status_code, slug, title, None, headers)


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed(request: Request) -> list[str]:
    """The methods some route takes on the request's path (Starlette names only those of
    the first route it finds there)."""
    routes = request.app.router.routes
    return [
        method
        for method in _METHODS
        if any(r.matches({**request.scope, "method": method})[0] is Match.FULL for r in routes)
    ]


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    if is_openai(request.url.path):
        return openai_error(500, "an unexpected error was logged", "internal")
    return problem(500, "internal", "Internal error", "an unexpected error was logged")


def install(app: FastAPI) -> None:
    app.add_exception_handler(HpcgateError, _hpcgate_error)
    app.add_exception_handler(PoolTimeout, _pool_timeout)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem responses a route can give."""
    return {
        status: {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": WHY[status]}
        for status in statuses
    }


WHY = {
    400: "Malformed request",
    401: "Missing, invalid, expired or revoked token",
    403: "The token lacks a required scope or its limits (a system, a project, a service,"
    " read-only) exclude the request, the caller's project role lacks the scope, the user"
    " maps to no usable Unix account, the path lies outside the roots, or the account may"
    " not do this",
    404: "No such system, job, task, file, service, function or invocation (or not yours)",
    410: "The invocation's events before the one asked for are no longer kept",
    409: "Conflict: a submit with the same Idempotency-Key is in progress, the file exists,"
    " a path is not a directory, a directory is not empty, the job or task has already ended,"
    " a function of that name exists, or several users share one of that name (OWNER:NAME)",
    413: "Request or script too large",
    416: "The Range lies outside the file",
    429: "Over a limit: the user's requests per minute or streams at once ([rate_limits]),"
    " an API key's requests per minute or unended invocations, a function's calls per"
    " minute or unended invocations per caller, or on /v1 the user's LLM tokens of the day"
    " (nothing was done; Retry-After says when to retry, RateLimit-Policy and RateLimit"
    " which limit and how far)",
    422: "Invalid fields, or a field the system's scheduler cannot honour or rejected",
    501: "The system's scheduler has no such thing",
    502: "The service's replica refused the connection or did not answer HTTP",
    503: "The scheduler or system is unavailable, the service has no ready replica, or the"
    " gateway's database connections are all in use (Retry-After says when to retry)",
    504: "The system or the service's replica did not answer in time",
    507: "The filesystem is full or the quota is exhausted",
}
