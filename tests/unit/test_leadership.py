"""Leadership among gateways on one real PostgreSQL database (two :class:`Leadership`s in
one process, each with its own connection, as two gateways have): one leads; when its
connection dies the other takes over at its next round, and the old one, at its own,
sees the lock is no longer its and stops leading. On SQLite a gateway always leads. Two
gateways starting at once on an empty database migrate it in turn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from hpcgate.leadership import PREFIX, Leadership
from hpcgate.store.db import Database
from tests.support.postgres import drop_database, execute, new_database


@pytest.fixture
async def database_url() -> AsyncIterator[str]:
    """A fresh database on the real PostgreSQL, dropped afterwards."""
    url = await new_database()
    yield url
    await drop_database(url)


async def _until(test: Callable[[], bool], seconds: float) -> None:
    """Wait until ``test`` holds, failing after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not test():
        assert time.monotonic() < deadline, "it never held"
        await asyncio.sleep(0.05)


@pytest.mark.postgres
async def test_one_leads_and_the_other_takes_over_when_its_connection_dies(
    database_url: str,
) -> None:
    first, second = (Leadership(database_url, 0.2, name) for name in ("gw-a", "gw-b"))
    await first.start()
    await second.start()
    try:
        assert first.leads() and first.leader == "gw-a"
        assert not second.leads() and second.leader == "gw-a"
        await _until(lambda: second.leader == "gw-a", 5)  # its loop's rounds change nothing
        assert first.leads() and not second.leads()
        # the leader's connection ends, as when its process is killed
        await execute(
            database_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            PREFIX + "gw-a",
        )
        await _until(lambda: second.leads() and not first.leads(), 5)  # each at its round
        await _until(lambda: first.leader == "gw-b", 5)
        assert second.leader == "gw-b"
    finally:
        await first.stop()
        await second.stop()
    assert not second.leads()


async def test_a_gateway_on_sqlite_always_leads(tmp_path: object) -> None:
    alone = Leadership(f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db", 1.0, "gw")
    await alone.start()
    assert alone.leads() and alone.leader == "gw"
    await alone.stop()
    assert alone.leads()


@pytest.mark.postgres
async def test_two_gateways_starting_at_once_migrate_an_empty_database_in_turn(
    database_url: str,
) -> None:
    both = [Database(database_url), Database(database_url)]
    try:
        await asyncio.gather(*(database.start() for database in both))
    finally:
        for database in both:
            await database.close()
