"""Admin pages (the ``admin`` scope only; 403 otherwise, as the API answers): usage of the
OpenAI-compatible routes by user, service and model (GET /api/v1/usage's totals), and the
declared services with their replicas; the audit log (GET /api/v1/audit); every user's
jobs and services (the list routes' ``all=true``)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from hpcgate.model.errors import Invalid
from hpcgate.model.jobs import JobState
from hpcgate.model.principal import Scope
from hpcgate.store.audit import AuditFilter
from hpcgate.store.usage import UsageFilter
from hpcgate.webui.render import page
from hpcgate.webui.viewer import ViewerDep

router = APIRouter(prefix="/admin")
#: The periods the usage page offers, in days back from now ("": all of it).
PERIODS = {"": "All", "1": "Last day", "7": "Last 7 days", "30": "Last 30 days"}
JOBS_PAGE = 100


@router.get("")
async def overview(
    request: Request,
    viewer: ViewerDep,
    user: Annotated[str | None, Query(max_length=64)] = None,
    service: Annotated[str | None, Query(max_length=40)] = None,
    model: Annotated[str | None, Query(max_length=128)] = None,
    days: Annotated[str | None, Query(max_length=2)] = None,
) -> Response:
    """Everyone's usage (filtered as the usage route filters) and the declared services."""
    viewer.who.require(Scope.ADMIN)
    since = _since(days)
    wanted = UsageFilter(user or None, service or None, model or None, since, None)
    usage = await viewer.gateway.openai.ledger.read(viewer.who, wanted)
    services = [s for s in await viewer.gateway.services.list(viewer.who) if s.owner is None]
    return page(
        request,
        "admin.html",
        viewer.session,
        usage=usage,
        services=services,
        filters={"user": user or "", "service": service or "", "model": model or ""},
        days=days if days in PERIODS else "",
        periods=PERIODS,
    )


def _since(days: str | None) -> datetime | None:
    if days not in PERIODS or not days:
        return None
    start = datetime.now(UTC) - timedelta(days=int(days))
    return start.replace(minute=0, second=0, microsecond=0)


Cursor = Annotated[str | None, Query(pattern=r"^[0-9]{1,18}$")]
AUDIT_PAGE = 100


@router.get("/audit")
async def audit(
    request: Request,
    viewer: ViewerDep,
    user: Annotated[str | None, Query(max_length=128)] = None,
    status: Annotated[str | None, Query(max_length=3)] = None,
    days: Annotated[str | None, Query(max_length=2)] = None,
    cursor: Cursor = None,
) -> Response:
    """The audit log (GET /api/v1/audit's records), newest first, filtered by user, status
    and period; a page at a time."""
    viewer.who.unrestricted()
    viewer.who.require(Scope.ADMIN)
    code = _status(status)
    before = int(cursor) if cursor else None
    where = AuditFilter(user or None, _since(days), None, code, before)
    found = await viewer.gateway.audit.page(where, AUDIT_PAGE)
    filters = {"user": user or "", "status": str(code or ""), "days": days or ""}
    return page(
        request,
        "admin_audit.html",
        viewer.session,
        records=found.items,
        older=_query(filters | {"cursor": found.next_cursor}) if found.next_cursor else None,
        filters=filters,
        days=days if days in PERIODS else "",
        periods=PERIODS,
    )


def _status(value: str | None) -> int | None:
    if not value:
        return None
    if not value.isdigit() or not 100 <= int(value) <= 599:
        raise Invalid("a status is a number from 100 to 599")
    return int(value)


def _query(fields: Mapping[str, str | None]) -> str:
    return urlencode({key: value for key, value in fields.items() if value})


@router.get("/jobs")
async def everyones_jobs(
    request: Request,
    viewer: ViewerDep,
    system: Annotated[str | None, Query(max_length=64)] = None,
    user: Annotated[str | None, Query(max_length=128)] = None,
    state: Annotated[str | None, Query(max_length=32)] = None,
) -> Response:
    """Every user's jobs on a system (GET .../jobs?all=true) and every user's services
    (GET /api/v1/services?all=true)."""
    viewer.who.require(Scope.ADMIN)
    names = [cluster.name for cluster in viewer.gateway.systems]
    chosen = system if system in names else names[0]
    wanted = [JobState(state)] if state in set(JobState) else []
    listed = await viewer.gateway.jobs.list(
        viewer.target(chosen), wanted, None, None, JOBS_PAGE, everyone=True, user=user or None
    )
    return page(
        request,
        "admin_jobs.html",
        viewer.session,
        jobs=listed.items,
        services=await viewer.gateway.services.every(viewer.who),
        system=chosen,
        systems=names,
        states=list(JobState),
        state=state if state in set(JobState) else "",
        user=user or "",
    )
