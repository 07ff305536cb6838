"""The real PostgreSQL of the tests (``scripts/postgres``): its URL, and databases of a
test's own on it, made fresh and dropped afterwards."""

from __future__ import annotations

import asyncio
import os
import uuid

import asyncpg
import pytest


def postgres_url() -> str:
    """The server's URL (``HPCGATE_TEST_POSTGRES_URL``); without one the test is skipped,
    and fails under CI, which must run the PostgreSQL tier."""
    url = os.environ.get("HPCGATE_TEST_POSTGRES_URL")
    if url:
        return url
    if os.environ.get("CI"):
        pytest.fail("CI must run the PostgreSQL tier: HPCGATE_TEST_POSTGRES_URL is not set")
    pytest.skip("no PostgreSQL (run the suite with scripts/test as root)")


async def execute(url: str, statement: str, *args: object) -> None:
    """One statement on its own connection to the database at ``url``."""
    connection = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        await connection.execute(statement, *args)
    finally:
        await connection.close()


async def new_database() -> str:
    """The URL of a database just made on the server."""
    server, name = postgres_url(), f"hpcgate_{uuid.uuid4().hex[:8]}"
    await execute(server, f'CREATE DATABASE "{name}"')
    return f"{server.rsplit('/', 1)[0]}/{name}"


async def drop_database(url: str) -> None:
    """Drop the database at ``url`` (made by :func:`new_database`), connections and all."""
    name = url.rsplit("/", 1)[1]
    await execute(postgres_url(), f'DROP DATABASE "{name}" WITH (FORCE)')


def new_database_now() -> str:
    """:func:`new_database` outside an event loop."""
    return asyncio.run(new_database())


def drop_database_now(url: str) -> None:
    """:func:`drop_database` outside an event loop."""
    asyncio.run(drop_database(url))
