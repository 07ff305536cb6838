"""Function and invocation rows: only reads and writes (the rules are the functions')."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Hashable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import delete, func, insert, select, update

from hpcgate.coalesce import Coalesced
from hpcgate.store.db import Database
from hpcgate.store.rows import Rows
from hpcgate.store.tables import FunctionRow, InvocationRow

UNENDED = ("queued", "running")
NO_PROJECT = ""  # the project of a function in none
_INSERT_INVOCATION = insert(InvocationRow)
CACHE_SECONDS = 5.0  # a function changed by another gateway on the database: seen by then
CACHE_MAX = 10_000  # lookups kept (unknown names included): bounded against name spraying
V = TypeVar("V")


class FunctionStore(Rows[FunctionRow]):
    """Function rows. The lookups by name (:meth:`find`, :meth:`named`: one per invocation)
    are answered from memory for up to ``cache_seconds``, so an invocation takes no pooled
    connection to find its function, and a crowd of misses shares one read. Every write
    through this store forgets them all at once (a re-registered or deleted function is
    never served stale by this gateway), and a read that began before a write is neither
    kept nor shared. The rows handed out are shared: read them, never change them."""

    kind = FunctionRow

    def __init__(self, database: Database, cache_seconds: float = CACHE_SECONDS) -> None:
        super().__init__(database)
        self._ttl = cache_seconds
        self._cache: dict[Hashable, tuple[float, Any]] = {}
        self._generation = 0  # counts the writes: a read older than the last is not kept
        self._loads: Coalesced[Hashable, Any] = Coalesced()

    async def _cached(self, key: Hashable, read: Callable[[], Awaitable[V]]) -> V:
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and now - hit[0] < self._ttl:
            return hit[1]  # type: ignore[no-any-return]
        generation = self._generation
        value: V = await self._loads.load(key, read)  # one read for a crowd of misses
        if generation == self._generation:
            if len(self._cache) >= CACHE_MAX:
                self._cache.clear()
            self._cache[key] = (now, value)
        return value

    def _forget(self) -> None:
        self._generation += 1
        self._cache.clear()
        self._loads = Coalesced()  # a read under way may be older than the write: not shared

    async def add(self, row: FunctionRow) -> FunctionRow:
        self._forget()
        try:
            return await super().add(row)
        finally:
            self._forget()

    async def find(self, owner: str, name: str) -> FunctionRow | None:
        """``owner``'s own function of that name (none of a project's)."""
        return await self._cached(("find", owner, name), lambda: self._find(owner, name))

    async def _find(self, owner: str, name: str) -> FunctionRow | None:
        query = select(FunctionRow).where(
            FunctionRow.owner == owner, FunctionRow.project == NO_PROJECT, FunctionRow.name == name
        )
        async with self._db.reader() as session:
            return (await session.scalars(query)).first()

    async def find_in(self, project: str, name: str) -> FunctionRow | None:
        """The project's function of that name."""
        return await self._cached(("in", project, name), lambda: self._find_in(project, name))

    async def _find_in(self, project: str, name: str) -> FunctionRow | None:
        query = select(FunctionRow).where(FunctionRow.project == project, FunctionRow.name == name)
        async with self._db.reader() as session:
            return (await session.scalars(query)).first()

    async def owns(self, owner: str, name: str) -> bool:
        """Whether ``owner`` has a function of that name."""
        return await self.find(owner, name) is not None

    async def named(self, name: str) -> list[FunctionRow]:
        """Every owner's function of that name."""
        return list(await self._cached(("named", name), lambda: self._named(name)))

    async def _named(self, name: str) -> list[FunctionRow]:
        """Every owner's own function of that name (none of a project's)."""
        query = (
            select(FunctionRow)
            .where(FunctionRow.name == name, FunctionRow.project == NO_PROJECT)
            .order_by(FunctionRow.pk)
        )
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def all(self) -> list[FunctionRow]:
        async with self._db.reader() as session:
            return list(await session.scalars(select(FunctionRow).order_by(FunctionRow.name)))

    async def by_pk(self, pk: int) -> FunctionRow | None:
        async with self._db.reader() as session:
            return await session.get(FunctionRow, pk)

    async def update(self, pk: int, **values: Any) -> None:
        self._forget()
        try:
            async with self._db.session() as session, session.begin():
                query = update(FunctionRow).where(FunctionRow.pk == pk).values(**values)
                await session.execute(query)
        finally:
            self._forget()

    async def remove(self, pk: int) -> None:
        self._forget()
        try:
            async with self._db.session() as session, session.begin():
                await session.execute(delete(InvocationRow).where(InvocationRow.function_pk == pk))
                await session.execute(delete(FunctionRow).where(FunctionRow.pk == pk))
        finally:
            self._forget()


class InvocationStore(Rows[InvocationRow]):
    """An invocation's writes are single-row Core statements through
    :meth:`Database.write_now`: on SQLite they run on the event loop when the database is
    free (cheaper than a thread hop per write, the most of an invocation's own cost)."""

    kind = InvocationRow

    async def add(self, row: InvocationRow) -> InvocationRow:
        columns = (column.key for column in InvocationRow.__table__.c)
        values = {key: value for key in columns if (value := getattr(row, key)) is not None}
        await self._db.write_now(lambda connection: connection.execute(_INSERT_INVOCATION, values))
        return row

    async def of(
        self, function_pk: int, caller: str | None, limit: int, key: str | None = None
    ) -> list[InvocationRow]:
        """The function's newest invocations (``caller``'s only, unless None; ``key``'s
        only, unless None)."""
        query = select(InvocationRow).where(InvocationRow.function_pk == function_pk)
        if caller is not None:
            query = query.where(InvocationRow.caller == caller)
        if key is not None:
            query = query.where(InvocationRow.key_id == key)
        query = query.order_by(InvocationRow.created_at.desc()).limit(limit)
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def live_of_key(self, key: str) -> int:
        """How many invocations the API key ``key`` started have not ended."""
        query = (
            select(func.count())
            .select_from(InvocationRow)
            .where(InvocationRow.key_id == key, InvocationRow.state.in_(UNENDED))
        )
        async with self._db.reader() as session:
            return int(await session.scalar(query) or 0)

    async def live_of_caller(self, function_pk: int, caller: str, key: str | None) -> int:
        """How many invocations of the function ``caller`` started have not ended: those
        of the API key ``key``, or (None) those the user started with a full token."""
        who = InvocationRow.key_id == key if key is not None else InvocationRow.key_id.is_(None)
        query = (
            select(func.count())
            .select_from(InvocationRow)
            .where(
                InvocationRow.function_pk == function_pk,
                InvocationRow.caller == caller,
                who,
                InvocationRow.state.in_(UNENDED),
            )
        )
        async with self._db.reader() as session:
            return int(await session.scalar(query) or 0)

    async def unended(self, function_pk: int | None = None) -> list[InvocationRow]:
        query = select(InvocationRow).where(InvocationRow.state.in_(UNENDED))
        if function_pk is not None:
            query = query.where(InvocationRow.function_pk == function_pk)
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def update(self, key: str, **values: Any) -> None:
        query = update(InvocationRow).where(InvocationRow.id == key).values(**values)
        await self._db.write_now(lambda connection: connection.execute(query))

    async def end(self, key: str, **values: Any) -> bool:
        """Write an end, unless the invocation has already ended; whether it was written."""
        query = (
            update(InvocationRow)
            .where(InvocationRow.id == key, InvocationRow.state.in_(UNENDED))
            .values(**values)
        )
        written = await self._db.write_now(lambda connection: connection.execute(query).rowcount)
        return bool(written)

    async def forget_ended_before(self, when: datetime) -> int:
        """Delete the ended invocations that ended (or, with no end written, began) before
        ``when``; how many. An unended one is never deleted."""
        ended_at = func.coalesce(InvocationRow.ended_at, InvocationRow.created_at)
        query = delete(InvocationRow).where(InvocationRow.state.not_in(UNENDED), ended_at < when)
        return await self._deleted(query)

    async def crowded(self, keep: int) -> list[int]:
        """The functions with more than ``keep`` ended invocations."""
        query = (
            select(InvocationRow.function_pk)
            .where(InvocationRow.state.not_in(UNENDED))
            .group_by(InvocationRow.function_pk)
            .having(func.count() > keep)
        )
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def forget_all_but(self, function_pk: int, keep: int) -> int:
        """Delete the function's ended invocations but the newest ``keep``; how many."""
        older = (
            select(InvocationRow.id)
            .where(InvocationRow.function_pk == function_pk, InvocationRow.state.not_in(UNENDED))
            .order_by(InvocationRow.created_at.desc(), InvocationRow.id)
            .offset(keep)
        )
        query = delete(InvocationRow).where(
            InvocationRow.function_pk == function_pk,
            InvocationRow.state.not_in(UNENDED),
            InvocationRow.id.in_(older.scalar_subquery()),
        )
        return await self._deleted(query)

    async def _deleted(self, query: Any) -> int:
        async with self._db.session() as session, session.begin():
            result = await session.execute(query)
        return int(getattr(result, "rowcount", 0) or 0)
