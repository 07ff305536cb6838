"""Database.write_now on a real SQLite file: inline when free, never blocking the loop."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import Connection, text

from hpcgate.store.db import Database


def _insert(connection: Connection) -> tuple[int, str]:
    result = connection.execute(
        text(
            "INSERT INTO tokens (id, user, secret_hash, scopes, description, created_at)"
            " VALUES (:id, 'alice', 'x', 'jobs:read', '', '2026-01-01') RETURNING id"
        ),
        {"id": f"t{time.monotonic_ns()}"},
    )
    return threading.get_ident(), str(result.scalar_one())


async def test_write_now_runs_on_the_loop_thread_when_the_database_is_free(
    tmp_path: Path,
) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db")
    await database.start()
    try:
        thread, token_id = await database.write_now(_insert)
        assert thread == threading.get_ident()
        assert _count(tmp_path, token_id) == 1
    finally:
        await database.close()


async def test_write_now_waits_in_a_worker_thread_while_another_writer_holds_the_lock(
    tmp_path: Path,
) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db")
    await database.start()
    other = sqlite3.connect(tmp_path / "hpcgate.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process writing, e.g. `hpcgate token create`
        write = asyncio.create_task(database.write_now(_insert))
        ticks = 0
        while not write.done() and ticks < 20:  # the loop keeps running meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        assert not write.done() and ticks == 20
        other.execute("COMMIT")
        thread, token_id = await write
        assert thread != threading.get_ident()
        assert _count(tmp_path, token_id) == 1
    finally:
        other.close()
        await database.close()


def _count(tmp_path: Path, token_id: str) -> int:
    with sqlite3.connect(tmp_path / "hpcgate.db") as connection:
        row = connection.execute("SELECT count(*) FROM tokens WHERE id = ?", (token_id,)).fetchone()
    return int(row[0])
