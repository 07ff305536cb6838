"""Retention of ended invocations on a real SQLite database: what one round forgets."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from hpcgate.functions.retention import Pruner, Retention
from hpcgate.store.db import Database
from hpcgate.store.functions import FunctionStore, InvocationStore
from hpcgate.store.tables import FunctionRow, InvocationRow

NOW = datetime(2026, 1, 10, 12, tzinfo=UTC)


def row(
    key: str, function_pk: int, state: str, age: timedelta, ended: bool = True
) -> InvocationRow:
    return InvocationRow(
        id=key,
        function_pk=function_pk,
        caller="alice",
        state=state,
        detached=False,
        last_seq=1,
        created_at=NOW - age,
        ended_at=NOW - age + timedelta(seconds=1) if ended else None,
    )


async def test_a_round_forgets_the_old_and_the_many_ended_never_an_unended_one(
    tmp_path: Path,
) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db")
    await database.start()
    try:
        functions = FunctionStore(database)
        one, two = [
            await functions.add(FunctionRow(owner="alice", name=n, system="local", spec="{}"))
            for n in ("one", "two")
        ]
        store = InvocationStore(database)
        minutes = [timedelta(minutes=m) for m in range(5)]
        rows = [row(f"new{m}", one.pk, "succeeded", age) for m, age in enumerate(minutes)]
        rows += [
            row("running-old", one.pk, "running", timedelta(days=30), ended=False),
            row("queued-old", one.pk, "queued", timedelta(days=30), ended=False),
            row("failed-old", one.pk, "failed", timedelta(days=8)),
            row("bad-old", one.pk, "no such state", timedelta(days=8), ended=False),
            row("two-a", two.pk, "cancelled", timedelta(days=6)),
            row("two-b", two.pk, "failed", timedelta(minutes=1)),
        ]
        for each in rows:
            await store.add(each)
        pruner = Pruner(store, Retention(days=7, per_function=3, interval=60), lambda: NOW)
        assert await pruner.prune() == 4
        left = {r.id for pk in (one.pk, two.pk) for r in await store.of(pk, None, 100)}
        assert left == {"new0", "new1", "new2", "running-old", "queued-old", "two-a", "two-b"}
        assert await pruner.prune() == 0
    finally:
        await database.close()
