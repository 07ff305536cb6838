"""Usage rows: written in batches by the hour and read as sums, each user its own; rows no
release wrote (negative or huge counts) never break a read, and the models a caller sees
leave out services whose stored spec does not parse."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hpcgate.clock import utcnow
from hpcgate.config import Settings
from hpcgate.gateway import Gateway
from hpcgate.model.errors import Forbidden
from hpcgate.model.principal import DEFAULT_SCOPES, Principal, Scope
from hpcgate.model.usage import TOTAL_MAX, Tokens, UsageEntry
from hpcgate.store.tables import ServiceRow, UsageRow
from hpcgate.store.usage import UsageFilter

ALICE = Principal("alice", DEFAULT_SCOPES, "t")
BOB = Principal("bob", DEFAULT_SCOPES, "t")
ADMIN = Principal("admin", frozenset({Scope.ADMIN}), "t")
HOUR = datetime(2026, 1, 1, 10, tzinfo=UTC)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    settings = Settings(home=tmp_path / "home", systems={"local": {"scheduler": "embedded"}})
    made = Gateway(settings)
    await made.open_store()
    yield made
    await made.database.close()


def _entry(user: str, model: str, prompt: int, at: datetime) -> UsageEntry:
    return UsageEntry(user, "", "llama", model, Tokens(prompt, 1), at)


async def test_entries_are_summed_per_user_service_and_model(gateway: Gateway) -> None:
    ledger = gateway.openai.ledger
    for at in (HOUR, HOUR + timedelta(minutes=59), HOUR + timedelta(hours=1)):
        ledger.record(_entry("alice", "m", 10, at))
    ledger.record(_entry("alice", "n", 5, HOUR))
    ledger.record(_entry("bob", "m", 7, HOUR))
    await ledger.flush()
    [m, n] = await ledger.read(ALICE, UsageFilter())
    assert (m.model, m.requests, m.prompt_tokens, m.completion_tokens) == ("m", 3, 30, 3)
    assert (n.model, n.requests, m.owner) == ("n", 1, None)
    assert len(await ledger.read(ADMIN, UsageFilter())) == 3
    [bob] = await ledger.read(ADMIN, UsageFilter(user="bob"))
    assert bob.prompt_tokens == 7
    hour = UsageFilter(since=HOUR + timedelta(hours=1))
    assert [(u.model, u.requests) for u in await ledger.read(ALICE, hour)] == [("m", 1)]
    assert await ledger.read(ALICE, UsageFilter(until=HOUR)) == []
    with pytest.raises(Forbidden):
        await ledger.read(BOB, UsageFilter(user="alice"))


async def test_rows_out_of_range_never_break_a_read(gateway: Gateway) -> None:
    store = gateway.openai.ledger.store
    odd = {"hour": HOUR, "user": "alice", "owner": "", "service": "llama", "model": "m"}
    await store.add(UsageRow(**odd, requests=-5, prompt_tokens=2**62, completion_tokens=-1))
    await store.add(UsageRow(**odd, requests=1, prompt_tokens=2**63 - 1, completion_tokens=0))
    [read] = await gateway.openai.ledger.read(ALICE, UsageFilter())
    assert (read.requests, read.completion_tokens) == (0, 0)
    assert 0 <= read.prompt_tokens <= TOTAL_MAX


async def test_a_service_whose_spec_does_not_parse_serves_no_model(gateway: Gateway) -> None:
    row = ServiceRow(
        name="broken",
        owner="alice",
        spec="{not json",
        min_replicas=0,
        max_replicas=1,
        stopping=False,
        created_at=utcnow(),
    )
    await gateway.service_store.add(row)
    assert await gateway.openai.models(ALICE) == []
