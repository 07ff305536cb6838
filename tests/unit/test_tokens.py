"""TokenService on a real SQLite file: an unknown id and a wrong secret cost the same work."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from hpcgate.model.errors import BadRequest, Unauthenticated
from hpcgate.store.db import Database
from hpcgate.store.tables import TokenRow
from hpcgate.store.tokens import TokenStore
from hpcgate.tokens import TokenService, secret_digest


class CountingTokenStore(TokenStore):
    """The real store, counting its reads of one token."""

    def __init__(self, database: Database, calls: Counter[str]) -> None:
        super().__init__(database)
        self._calls = calls

    async def get(self, key: str) -> TokenRow | None:
        self._calls["read"] += 1
        return await super().get(key)


async def _work(service: TokenService, presented: str, calls: Counter[str]) -> Counter[str]:
    calls.clear()
    for _ in range(3):
        with pytest.raises(Unauthenticated, match=r"^invalid token$"):
            await service.authenticate(presented)
    return Counter(calls)


async def test_an_unknown_id_costs_what_a_wrong_secret_costs(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db")
    await database.start()
    calls: Counter[str] = Counter()

    def digest(secret: str) -> str:
        calls["hash"] += 1
        return secret_digest(secret)

    try:
        service = TokenService(CountingTokenStore(database, calls), digest=digest)
        issued = await service.create("alice")
        wrong = issued.secret[:-1] + ("A" if issued.secret[-1] != "A" else "B")
        unknown = f"hpcg_{'0' * 12}_{issued.secret[-43:]}"
        known_cost = await _work(service, wrong, calls)
        unknown_cost = await _work(service, unknown, calls)
        assert known_cost["hash"] == 3 and known_cost == unknown_cost
    finally:
        await database.close()


async def test_a_token_that_could_not_be_shown_is_never_stored(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db")
    await database.start()
    try:
        store = TokenStore(database)
        with pytest.raises(BadRequest, match="at least one scope"):
            await TokenService(store).create("alice", frozenset())
        assert await store.find() == []
    finally:
        await database.close()
