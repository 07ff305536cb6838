"""Usage rows: written in batches, read as sums (the rules are the services domain's)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Float, cast, func, select

from hpcgate.store.rows import Rows
from hpcgate.store.tables import UsageRow

GROUP = (UsageRow.user, UsageRow.owner, UsageRow.service, UsageRow.model)


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """Which rows a read adds up: every field left None matches all."""

    user: str | None = None
    service: str | None = None
    model: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class UsageSum:
    user: str
    owner: str
    service: str
    model: str
    requests: int
    prompt_tokens: int
    completion_tokens: int


def _conditions(wanted: UsageFilter) -> list[ColumnElement[bool]]:
    columns = {"user": UsageRow.user, "service": UsageRow.service, "model": UsageRow.model}
    found = [
        column == value
        for field, column in columns.items()
        if (value := getattr(wanted, field)) is not None
    ]
    if wanted.since is not None:
        found.append(UsageRow.hour >= wanted.since)
    if wanted.until is not None:
        found.append(UsageRow.hour < wanted.until)
    return found


class UsageStore(Rows[UsageRow]):
    kind = UsageRow

    async def add_all(self, rows: list[UsageRow]) -> None:
        async with self._db.session() as session, session.begin():
            session.add_all(rows)

    async def sums(self, wanted: UsageFilter, limit: int) -> list[UsageSum]:
        # summed as floating point: an integer sum past 2^63 is an error in SQLite (the
        # domain clamps the totals)
        totals = (
            func.sum(cast(UsageRow.requests, Float)),
            func.sum(cast(UsageRow.prompt_tokens, Float)),
            func.sum(cast(UsageRow.completion_tokens, Float)),
        )
        query = select(*GROUP, *totals).where(*_conditions(wanted))
        query = query.group_by(*GROUP).order_by(*GROUP).limit(limit)
        async with self._db.reader() as session:
            found = (await session.execute(query)).all()
        return [
            UsageSum(user, owner, service, model, _whole(n), _whole(p), _whole(c))
            for user, owner, service, model, n, p, c in found
        ]


def _whole(total: float | None) -> int:
    """A sum as a whole number, within the BIGINT range the domain clamps it to."""
    if total is None or total != total:  # NaN: never from a sum of integers, still safe
        return 0
    return int(max(min(total, 2.0**63 - 1024), -(2.0**63)))
