"""The database handle: engine, sessions and migrations (Alembic, run at start-up)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, TypeVar

import anyio
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, make_url, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PoolBounds:
    """How many pooled connections an engine keeps (``size``), opens beyond them
    (``overflow``), and how long a session waits for one (``timeout``, seconds) before
    SQLAlchemy's ``TimeoutError``, which the API answers as a 503 with Retry-After."""

    size: int
    overflow: int
    timeout: float = 30.0


#: Each aiosqlite connection is a thread; a few are faster than many (less GIL churn).
SQLITE_POOL = PoolBounds(size=2, overflow=2)
SERVER_POOL = PoolBounds(size=10, overflow=20)


class Database:
    """One engine per process. Nothing connects until :meth:`start`. ``pool`` bounds each
    async engine's pool (default: :data:`SQLITE_POOL` or :data:`SERVER_POOL`)."""

    def __init__(self, url: str, pool: PoolBounds | None = None) -> None:
        self.url = url
        self._pool = pool or (SQLITE_POOL if url.startswith("sqlite") else SERVER_POOL)
        self._engines: list[AsyncEngine] = []
        self._sessions: async_sessionmaker[AsyncSession] | None = None
        self._readers: async_sessionmaker[AsyncSession] | None = None
        self._read_engine: AsyncEngine | None = None
        self._write_engine: AsyncEngine | None = None
        self._sync_engine: Engine | None = None
        self._inline_engine: Engine | None = None

    async def start(self) -> None:
        """Connect and bring the schema to the newest migration."""
        writer = self._write_engine = self._engine()
        # Single-statement reads need no transaction: skipping BEGIN/ROLLBACK round trips
        # makes the hot reads (token, job) about three times cheaper.
        # An autocommit connection has no transaction to roll back when it returns to the pool.
        reader = self._read_engine = self._engine(
            isolation_level="AUTOCOMMIT", pool_reset_on_return=None
        )
        self._sessions = async_sessionmaker(writer, expire_on_commit=False)
        self._readers = async_sessionmaker(reader, expire_on_commit=False)
        async with writer.begin() as connection:
            await connection.run_sync(_upgrade)
        if writer.dialect.name == "sqlite":
            url = make_url(self.url).set(drivername="sqlite+pysqlite")
            args = {"timeout": 30, "check_same_thread": False}
            self._sync_engine = create_engine(url, connect_args=args, pool_size=2)
            event.listen(self._sync_engine, "connect", _sqlite_pragmas)
            # One connection that never waits for a lock: the event loop must not block on one.
            self._inline_engine = create_engine(
                url, connect_args={"timeout": 0, "check_same_thread": False}, pool_size=1
            )
            event.listen(self._inline_engine, "connect", _sqlite_pragmas_no_wait)

    def _engine(self, **options: Any) -> AsyncEngine:
        engine = create_async_engine(self.url, **_engine_options(self.url, self._pool), **options)
        if engine.dialect.name == "sqlite":
            event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        self._engines.append(engine)
        return engine

    async def close(self) -> None:
        for engine in self._engines:
            await engine.dispose()
        self._engines.clear()
        for sync_engine in (self._sync_engine, self._inline_engine):
            if sync_engine is not None:
                sync_engine.dispose()
        self._sync_engine = self._inline_engine = None

    def session(self) -> AsyncSession:
        """A session for writes (and reads that must see one transaction)."""
        if self._sessions is None:
            raise RuntimeError("Database.start() was not called")
        return self._sessions()

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run ``work`` (a few Core statements) in one committed transaction.

        For SQLite it runs whole in a worker thread on a plain pysqlite connection: one thread
        hop for the transaction instead of several per statement through aiosqlite, which
        halves the cost of the two writes every submit makes.
        """
        if self._sync_engine is not None:
            return await anyio.to_thread.run_sync(self._write_sync, work)
        if self._write_engine is None:
            raise RuntimeError("Database.start() was not called")
        async with self._write_engine.begin() as connection:
            return await connection.run_sync(work)

    def _write_sync(self, work: Callable[[Connection], T]) -> T:
        assert self._sync_engine is not None
        with self._sync_engine.begin() as connection:
            return work(connection)

    async def write_now(self, work: Callable[[Connection], T]) -> T:
        """Like :meth:`write`, for a transaction of a few single-row statements.

        On SQLite it runs on the event loop itself when the database is free: such a
        transaction costs less than the hop to a worker thread, which is most of a submit's
        time in the database on a busy machine. It never waits for a lock there: if another
        writer holds one, it rolls back and goes the way of :meth:`write`.
        """
        if self._inline_engine is not None:
            try:
                with self._inline_engine.begin() as connection:
                    return work(connection)
            except OperationalError as exc:
                if not _is_busy(exc):
                    raise
        return await self.write(work)

    def read_connection(self) -> AsyncConnection:
        """A bare autocommit connection, for the hottest Core reads."""
        if self._read_engine is None:
            raise RuntimeError("Database.start() was not called")
        return self._read_engine.connect()

    def reader(self) -> AsyncSession:
        """A session for single-statement reads, in autocommit mode."""
        if self._readers is None:
            raise RuntimeError("Database.start() was not called")
        return self._readers()


def _engine_options(url: str, pool: PoolBounds) -> dict[str, Any]:
    bounds = {"pool_size": pool.size, "max_overflow": pool.overflow, "pool_timeout": pool.timeout}
    if url.startswith("sqlite"):
        return {"connect_args": {"timeout": 30}, **bounds}
    return {**bounds, "pool_pre_ping": True}


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    # WAL lets the CLI write tokens while the server reads; NORMAL is durable in WAL mode
    # against process crashes, which is what an acknowledged submit needs.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _sqlite_pragmas_no_wait(dbapi_connection: DBAPIConnection, record: ConnectionPoolEntry) -> None:
    _sqlite_pragmas(dbapi_connection, record)
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=0")
    cursor.close()


def _is_busy(exc: OperationalError) -> bool:
    code = getattr(exc.orig, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(resources.files("hpcgate.store") / "migrations"))
    return config


#: The advisory lock two gateways starting at once on one PostgreSQL take in turn around
#: the migration (the second then finds the schema up to date, not half made).
MIGRATION_LOCK = 0x6870_6367_6D69_6772


def _upgrade(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":  # held until the transaction ends
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
