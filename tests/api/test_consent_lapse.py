"""Consent requests on a real store (SQLite, and PostgreSQL where the suite has one), with the
service's clock moved on rather than waited for: a request nobody decides lapses, holds its
credential refused, decides nothing, and counts no longer against its user's waiting
requests; two first requests of one credential at once open one request."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hpcgate.config import ConsentConfig
from hpcgate.consent import Consents
from hpcgate.model.consents import ConsentPending, ConsentState
from hpcgate.model.errors import Forbidden, Gone
from hpcgate.model.principal import DEFAULT_SCOPES, Principal, Scope
from hpcgate.model.tokens import CreatedToken
from hpcgate.store.consents import ConsentStore
from hpcgate.store.db import Database
from tests.support.postgres import new_database

START = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
PORTAL = Principal("alice", DEFAULT_SCOPES, "oidc:0123456789abcdef", client="portal")
LOGIN = Principal("alice", DEFAULT_SCOPES, "0123456789ab")


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


async def _no_parent(token_id: str) -> str | None:
    return None


async def _no_revoke(token_id: str) -> None:
    raise AssertionError("nothing here is a token of hpcgate's")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def database(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Database]:
    url = f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db"
    if request.param == "postgres":
        url = await new_database()
    db = Database(url)
    await db.start()
    try:
        yield db
    finally:
        await db.close()


async def test_an_undecided_request_lapses_and_its_credential_stays_refused(
    database: Database,
) -> None:
    clock = Clock()
    config = ConsentConfig(clients=["portal"], pending_seconds=60, pending_per_user=1)
    consents = Consents(ConsentStore(database), config, _no_parent, _no_revoke, 0, clock)
    with pytest.raises(ConsentPending) as held:
        await consents.admit(PORTAL)
    consent = held.value.answer.consent
    assert consent.expires_at == START + timedelta(seconds=60)
    with pytest.raises(ConsentPending):  # the same request again, not a second one
        await consents.admit(PORTAL)
    assert [c.id for c in await consents.list(LOGIN, ConsentState.PENDING, 10)] == [consent.id]
    clock.now = START + timedelta(seconds=61)
    with pytest.raises(Forbidden, match="lapsed"):
        await consents.admit(PORTAL)
    with pytest.raises(Gone):
        await consents.decide(LOGIN, consent.id, approve=True)
    lapsed = await consents.list(LOGIN, ConsentState.LAPSED, 10)
    assert [(c.id, c.state) for c in lapsed] == [(consent.id, ConsentState.LAPSED)]
    assert await consents.list(LOGIN, ConsentState.PENDING, 10) == []
    other = Principal("alice", DEFAULT_SCOPES, "oidc:fedcba9876543210", client="portal")
    with pytest.raises(ConsentPending):  # the lapsed one no longer fills alice's one place
        await consents.admit(other)


async def test_two_first_requests_at_once_open_one_consent_request(database: Database) -> None:
    config = ConsentConfig(clients=["portal"])
    consents = Consents(ConsentStore(database), config, _no_parent, _no_revoke, 0)
    answers = await asyncio.gather(
        *(consents.admit(PORTAL) for _ in range(4)), return_exceptions=True
    )
    assert all(isinstance(answer, ConsentPending) for answer in answers), answers
    ids = {answer.answer.consent.id for answer in answers if isinstance(answer, ConsentPending)}
    assert len(ids) == 1
    assert len(await consents.list(LOGIN, None, 10)) == 1


async def test_another_token_of_the_client_that_asked_decides_nothing(database: Database) -> None:
    """A portal whose tokens map to alice could fetch a fresh one (no descendant of the one
    that asked): it still may not approve what its client asked for."""
    asker = Principal("alice", DEFAULT_SCOPES, "oidc:1111111111111111", client="webportal")
    made = CreatedToken(
        id="aaaaaaaaaaaa",
        user="alice",
        scopes=[Scope.FILES_WRITE],
        description="",
        created_at=START,
        expires_at=None,
        revoked_at=None,
        token="hpcg_x",
    )
    held = ConsentConfig(token_scopes=[Scope.FILES_WRITE])
    consents = Consents(ConsentStore(database), held, _no_parent, _no_revoke, 0)
    with pytest.raises(ConsentPending) as pending:
        await consents.check_new_token(asker, made)
    fresh = Principal("alice", DEFAULT_SCOPES, "oidc:2222222222222222", client="webportal")
    with pytest.raises(Forbidden, match="webportal"):
        await consents.decide(fresh, pending.value.answer.consent.id, approve=True)
    decided = await consents.decide(LOGIN, pending.value.answer.consent.id, approve=True)
    assert decided.state is ConsentState.APPROVED
