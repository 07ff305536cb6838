"""The audit log at the HTTP edge: :class:`AuditTrail` records every state-changing request
and WebSocket connect as its answer begins; ``GET /api/v1/audit`` reads the log (admins).

Each audited answer carries its request id in ``X-Request-Id``: the gateway makes it (a
caller cannot choose what the log says its request was called).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BeforeValidator
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as AsgiScope

from hpcgate.api.auth import CALLER, Caller, GatewayDep
from hpcgate.api.problems import responses
from hpcgate.audit import AuditLog, Entry
from hpcgate.clock import utcnow
from hpcgate.model.audit import AuditPage
from hpcgate.model.bounds import iso_only
from hpcgate.model.principal import Principal, Scope
from hpcgate.store.audit import AuditFilter

AUDITED = frozenset({"POST", "PUT", "PATCH", "DELETE"})
NO_ANSWER = 499  # the caller left before any answer started
_PARAMS_MAX, _VALUE_MAX = 8, 120


class AuditTrail:
    """ASGI middleware: one :class:`Entry` per audited request, recorded just after its
    answer's first body piece is sent (so the log line and the record's other work are not
    on the way to the caller's first byte; the status is the answer's start's), when a
    WebSocket is accepted (101) or refused, or when the request ends without an answer
    (an error: 500; the caller gone: 499), or ends after its start only. Other requests
    pass untouched."""

    def __init__(self, app: ASGIApp, log: AuditLog) -> None:
        self.app = app
        self._log = log

    async def __call__(self, scope: AsgiScope, receive: Receive, send: Send) -> None:
        audited = scope["type"] == "websocket" or (
            scope["type"] == "http" and scope["method"] in AUDITED
        )
        if not audited:
            await self.app(scope, receive, send)
            return
        at, request_id, recorded = utcnow(), uuid.uuid4().hex, False
        answered: int | None = None  # the status of the answer's start, once sent

        def finish(status: int, later: bool = False) -> None:
            nonlocal recorded
            if not recorded:
                recorded = True
                if later:  # after the loop's turn: the piece just sent goes out first
                    asyncio.get_running_loop().call_soon(
                        self._record, scope, at, status, request_id
                    )
                else:
                    self._record(scope, at, status, request_id)

        async def audited_send(message: Message) -> None:
            nonlocal answered
            if message["type"] == "http.response.start":
                header = (b"x-request-id", request_id.encode())
                await send({**message, "headers": [*message.get("headers", []), header]})
                answered = int(message["status"])
                return
            if answered is None and (status := _status(message)) is not None:
                finish(status)
            await send(message)
            if answered is not None:
                finish(answered, later=True)

        failed = True
        try:
            await self.app(scope, receive, audited_send)
            failed = False
        finally:
            if answered is not None:
                finish(answered)
            finish(500 if failed else NO_ANSWER)

    def _record(self, scope: AsgiScope, at: Any, status: int, request_id: str) -> None:
        self._log.record(_entry(scope, at, status, request_id))


def _status(message: Message) -> int | None:
    """The status an answer's first message gives, if it is one."""
    kind = message["type"]
    if kind in ("http.response.start", "websocket.http.response.start"):
        return int(message["status"])
    if kind == "websocket.accept":
        return 101
    if kind == "websocket.close":  # before an accept: the server refuses with a 403
        return 403
    return None


def _entry(scope: AsgiScope, at: Any, status: int, request_id: str) -> Entry:
    who: Principal | None = scope.get("state", {}).get(CALLER)
    route = getattr(scope.get("route"), "path", None)
    params = scope.get("path_params") or {}
    client = scope.get("client")
    return Entry(
        at=at,
        user=None if who is None else who.user,
        token_id=None if who is None else who.token_id,
        client=None if who is None else (who.client or who.key_id),
        method="WEBSOCKET" if scope["type"] == "websocket" else scope["method"],
        route=route if isinstance(route, str) else scope["path"][:256],
        resource={str(k): str(v)[:_VALUE_MAX] for k, v in list(params.items())[:_PARAMS_MAX]},
        status=status,
        address=str(client[0])[:64] if client else None,
        request_id=request_id,
    )


router = APIRouter(prefix="/api/v1/audit", tags=["audit"])

User = Annotated[
    str | None,
    Query(
        max_length=128,
        pattern=r"^[A-Za-z0-9_.@:-]+$",
        description="Only this user's records (a service account: client:ID)",
    ),
]
Since = Annotated[
    AwareDatetime | None,
    BeforeValidator(iso_only),
    Query(description="Records of requests from this moment on (with its zone)"),
]
Until = Annotated[
    AwareDatetime | None,
    BeforeValidator(iso_only),
    Query(description="Records of requests before this moment"),
]
Status = Annotated[int | None, Query(ge=100, le=599, description="Only answers of this status")]
Cursor = Annotated[
    str | None,
    Query(pattern=r"^[0-9]{1,18}$", description="The next_cursor of the page before"),
]
Limit = Annotated[int, Query(ge=1, le=1000, description="Records in a page")]


@router.get(
    "",
    summary="The audit log of state-changing requests (admin scope)",
    responses=responses(401, 403, 422),
)
async def audit(
    who: Caller,
    gateway: GatewayDep,
    user: User = None,
    since: Since = None,
    until: Until = None,
    status: Status = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> AuditPage:
    """Every POST, PUT, PATCH and DELETE and every WebSocket connect, newest first: when,
    who (the user, and the OAuth client or API key it came through), what (method, route
    template, the route's ids), the answer's status, from which address, and the request
    id its answer carried in ``X-Request-Id``. Records are only ever added; the gateway
    deletes them ``[audit] keep_days`` after their request, never otherwise. Each is also
    one JSON line of the ``hpcgate.audit`` logger. A ``since`` not before ``until`` finds
    none."""
    who.unrestricted()
    who.require(Scope.ADMIN)
    before = None if cursor is None else int(cursor)
    where = AuditFilter(user, _utc(since, datetime.min), _utc(until, datetime.max), status, before)
    return await gateway.audit.page(where, limit)


def _utc(moment: datetime | None, bound: datetime) -> datetime | None:
    """``moment`` in UTC; a moment whose UTC falls outside the years 1-9999 is that bound."""
    if moment is None:
        return None
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return bound.replace(tzinfo=UTC)
