"""The database's pool under load: a request that waits its whole bound for a pooled
connection is a 503 problem document with Retry-After that changed nothing (not a 500),
and a function's lookup by name is answered without a pooled connection once read, yet
never stale after its function is removed or registered again through this gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

from hpcgate.api.app import create_app
from hpcgate.clock import utcnow
from hpcgate.config import Settings
from hpcgate.gateway import Gateway
from hpcgate.store.db import Database, PoolBounds
from hpcgate.store.tables import FunctionRow

#: One pooled connection per engine, none beyond it, waited for half a second.
TINY = PoolBounds(size=1, overflow=0, timeout=0.5)


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    home = tmp_path / "home"
    home.mkdir()
    settings = Settings(home=home, systems={"local": {"scheduler": "embedded"}})
    made = Gateway(settings, Database(settings.database_url, TINY))
    await made.open_store()
    yield made
    await made.database.close()


def _client(gateway: Gateway, token: str) -> httpx.AsyncClient:
    app = create_app(gateway.settings, gateway)  # its lifespan is not run: the store is open
    transport = httpx.ASGITransport(app=app)
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(transport=transport, base_url="http://gw", headers=headers)


async def test_an_exhausted_pool_is_a_503_with_retry_after_that_changes_nothing(
    gateway: Gateway,
) -> None:
    token = (await gateway.tokens.create("alice")).secret
    async with _client(gateway, token) as client:
        async with gateway.database.read_connection() as held:  # the reader pool's one
            await held.execute(text("SELECT 1"))
            made = await client.post("/api/v1/tokens", json={"description": "while busy"})
            listed = await client.get("/api/v1/tokens")
        assert made.status_code == 503, made.text
        assert made.headers["content-type"] == "application/problem+json"
        assert made.headers["retry-after"] == "2"
        assert made.json()["type"].endswith("/database-busy")
        assert listed.status_code == 503
        after = await client.get("/api/v1/tokens")  # the connection back: served again
        assert after.status_code == 200, after.text
        assert [t["description"] for t in after.json()] == [""]  # nothing was made


def _row(name: str, secret: str) -> FunctionRow:
    return FunctionRow(
        owner="alice",
        name=name,
        system="local",
        spec="{}",
        worker_secret=secret,
        created_at=utcnow(),
    )


async def test_a_function_is_found_without_a_pooled_connection_and_never_stale(
    gateway: Gateway,
) -> None:
    store = gateway.function_store
    first = await store.add(_row("sim", "one"))
    assert (await store.find("alice", "sim")).pk == first.pk  # type: ignore[union-attr]
    assert len(await store.named("sim")) == 1
    async with gateway.database.read_connection() as held:  # no pooled connection left
        await held.execute(text("SELECT 1"))
        found = await store.find("alice", "sim")
        assert found is not None and found.worker_secret == "one"
        assert [row.pk for row in await store.named("sim")] == [first.pk]
    await store.remove(first.pk)
    assert await store.find("alice", "sim") is None  # at once, not after the cache's time
    second = await store.add(_row("sim", "two"))
    again = await store.find("alice", "sim")
    assert again is not None and (again.pk, again.worker_secret) == (second.pk, "two")
