"""``/api/v1/usage``: requests and tokens of the OpenAI-compatible routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, BeforeValidator

from hpcgate.api.auth import Caller, GatewayDep
from hpcgate.api.problems import responses
from hpcgate.model.bounds import iso_only
from hpcgate.model.usage import Usage
from hpcgate.store.usage import UsageFilter

router = APIRouter(prefix="/api/v1/usage", tags=["services"])

User = Annotated[str | None, Query(max_length=64, description="Whose (admin only; default: all)")]
ServiceName = Annotated[
    str | None, Query(pattern=r"^[a-z][a-z0-9-]{0,39}$", description="Only this service's")
]
ModelName = Annotated[str | None, Query(max_length=128, description="Only this model's")]
Since = Annotated[
    AwareDatetime | None,
    BeforeValidator(iso_only),
    Query(description="From the hour this falls in on (with its zone)"),
]
Until = Annotated[
    AwareDatetime | None,
    BeforeValidator(iso_only),
    Query(description="Hours that begin before this"),
]


@router.get("", summary="Requests and tokens on /v1", responses=responses(401, 403, 422))
async def usage(
    who: Caller,
    gateway: GatewayDep,
    user: User = None,
    service: ServiceName = None,
    model: ModelName = None,
    since: Since = None,
    until: Until = None,
) -> list[Usage]:
    """Totals per user, service and model, counted by the hour: your own, or (admin)
    everyone's. Tokens are those the backends reported in their answers' ``usage``."""
    wanted = UsageFilter(user, service, model, _hour(since), until)
    return await gateway.openai.ledger.read(who, wanted)


def _hour(moment: AwareDatetime | None) -> AwareDatetime | None:
    """The start of the hour ``moment`` falls in (usage is counted by the hour)."""
    if moment is None:
        return None
    return moment.replace(minute=0, second=0, microsecond=0)
