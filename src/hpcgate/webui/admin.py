"""Admin pages (the ``admin`` scope only; 403 otherwise, as the API answers): usage of the
OpenAI-compatible routes by user, service and model (GET /api/v1/usage's totals), and the
declared services with their replicas."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from hpcgate.model.principal import Scope
from hpcgate.store.usage import UsageFilter
from hpcgate.webui.render import page
from hpcgate.webui.viewer import ViewerDep

router = APIRouter(prefix="/admin")
#: The periods the usage page offers, in days back from now ("": all of it).
PERIODS = {"": "All", "1": "Last day", "7": "Last 7 days", "30": "Last 30 days"}


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
