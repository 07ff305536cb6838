"""The housekeeping's chores that keep tables and counters from growing forever: old
consent requests (on SQLite and on the real PostgreSQL, with real tokens revoked), unused
rate-limit windows, and the loop that runs them (one failing chore stops no other)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError

from hpcgate.config import ConsentConfig, RateLimitsConfig
from hpcgate.consent import Consents
from hpcgate.housekeeping import Chore, Housekeeping
from hpcgate.model.errors import Unauthenticated
from hpcgate.model.principal import Principal
from hpcgate.ratelimits import RateLimits, prune_windows
from hpcgate.store.consents import ConsentStore
from hpcgate.store.db import Database
from hpcgate.store.tables import ConsentRow
from hpcgate.store.tokens import TokenStore
from hpcgate.tokens import TokenService
from tests.support.postgres import drop_database, new_database

NOW = datetime.now(UTC)
DAY = timedelta(days=1)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    """A fresh database: SQLite, or one made on the real PostgreSQL (dropped afterwards)."""
    if request.param == "sqlite":
        made = Database(f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db")
        await made.start()
        yield made
        await made.close()
        return
    made = Database(await new_database())
    try:
        await made.start()
        yield made
    finally:
        await made.close()
        await drop_database(made.url)


class FakeBrokenRevoke:
    """The real revocation, failing for one token id as a database fault would (no fault
    can be provoked for one row of a real database here)."""

    def __init__(self, real: Callable[[str], Awaitable[None]], broken: str) -> None:
        self._real, self.broken = real, broken

    async def __call__(self, token_id: str) -> None:
        if token_id == self.broken:
            raise RuntimeError("the database went away")
        await self._real(token_id)


def _row(key: str, credential: str, state: str, age: timedelta, kind: str = "token") -> ConsentRow:
    """A request made ``age`` ago: decided then (approved, denied), or lapsing then."""
    return ConsentRow(
        id=key,
        user="alice",
        kind=kind,
        credential=credential,
        scopes="files:write",
        asker_user="alice",
        asker_token="asker",
        created_at=NOW - age - timedelta(minutes=15),
        expires_at=NOW - age,
        state=state,
        decided_at=None if state == "pending" else NOW - age,
    )


async def test_old_requests_go_in_bounded_batches_and_held_tokens_are_revoked_first(
    database: Database, tmp_path: Path
) -> None:
    tokens = TokenService(TokenStore(database), tmp_path / "tokens.revoked", cache_seconds=0)
    made = {name: await tokens.create("alice") for name in ("approved", "lapsed", "broken")}
    revoke = FakeBrokenRevoke(tokens.revoke, made["broken"].id)
    store = ConsentStore(database)
    config = ConsentConfig(token_scopes=["files:write"], keep_days=30)

    async def no_parent(token_id: str) -> str | None:
        return None

    consents = Consents(store, config, no_parent, revoke, cache_seconds=0)
    old, recent = 40 * DAY, DAY
    rows = [
        _row("0a", made["approved"].id, "approved", old),
        _row("0b", "gone-already", "denied", old),  # its token revoked at the denial
        _row("0c", made["broken"].id, "pending", old),  # lapsed, its token not revocable now
        _row("0d", made["lapsed"].id, "pending", old),  # lapsed: its token must not act
        _row("0e", "oidc:abc", "pending", old, kind="client"),
        _row("0f", "oidc:def", "denied", old, kind="client"),
        _row("1a", "recent-approved", "approved", recent),
        _row("1b", "recent-lapsed", "pending", recent),
        _row("1c", "waiting", "pending", -recent),  # still pending: never deleted
    ]
    for row in rows:
        await store.add(row)
    assert await consents.prune(batch=2, batches=2) == 3  # 0a 0b (0c kept) 0d: 4 rows read
    assert await consents.prune(batch=2, batches=2) == 2  # 0e 0f; 0c kept again
    assert await consents.prune(batch=2, batches=2) == 0
    left = {row.id for row in await store.find("alice", None, 100)}
    assert left == {"0c", "1a", "1b", "1c"}
    assert (await tokens.authenticate(made["approved"].secret)).user == "alice"
    with pytest.raises(Unauthenticated):  # the lapsed request's token was revoked with it
        await tokens.authenticate(made["lapsed"].secret)
    revoke.broken = ""  # the fault is over: the next round takes the kept one
    assert await consents.prune() == 1
    with pytest.raises(Unauthenticated):
        await tokens.authenticate(made["broken"].secret)


def test_the_retention_is_bounded_at_load() -> None:
    for wrong in ({"keep_days": 0.5}, {"keep_days": 4000}, {"prune_seconds": 0}):
        with pytest.raises(ValidationError):
            ConsentConfig.model_validate(wrong)


async def test_unused_rate_limit_windows_are_dropped_a_batch_at_a_time() -> None:
    limits = RateLimits(RateLimitsConfig(requests_per_minute=100, window_seconds=10))
    for number in range(25):
        limits.admit(Principal(f"user{number}", frozenset(), f"t{number}"))
    assert limits.stale_windows() == []  # all in use
    later = time.time() + 25  # two windows and more on
    assert len(limits.stale_windows(later)) == 25
    assert limits.forget_stale(["user0", "user1"], later) == 2
    assert len(limits.stale_windows(later)) == 23
    assert await prune_windows(limits, batch=5) == 0  # now: none is stale yet
    assert await prune_windows(limits, batch=5, now=later) == 23
    assert limits.stale_windows(later) == []
    limits.admit(Principal("user0", frozenset(), "t0"))  # dropped, counted afresh
    assert "user0" not in limits.stale_windows()


async def test_a_failing_chore_stops_neither_the_loop_nor_the_others() -> None:
    ran: list[str] = []
    counted = asyncio.Event()

    async def failing() -> int:
        ran.append("failing")
        raise RuntimeError("a table is locked")

    async def counting() -> int:
        ran.append("counting")
        if ran.count("counting") >= 2:
            counted.set()
        return 1

    async def shared() -> int:
        ran.append("shared")
        return 1

    chores = [
        Chore("failing", failing, 0.01, shared=False),
        Chore("counting", counting, 0.01, shared=False),
        Chore("shared", shared, 0.01),
    ]
    housekeeping = Housekeeping(chores, leads=lambda: False)
    housekeeping.start()
    try:
        await asyncio.wait_for(counted.wait(), 10)
    finally:
        await housekeeping.stop()
    assert ran.count("failing") >= 2 and "shared" not in ran  # not the leader: no shared chore
    assert await Housekeeping(chores).do(chores[2]) == 1  # the leader's does
