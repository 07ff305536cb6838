"""Job rows and their state-change events: only reads and writes.

What a poll changes is decided by the jobs domain (:mod:`hpcgate.jobs.transitions`); the
store writes what it is told, each poll in one transaction.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Select, bindparam, delete, func, insert, select, update

from hpcgate.clock import utcnow
from hpcgate.coalesce import Coalesced
from hpcgate.model.jobs import JobState
from hpcgate.store.db import Database
from hpcgate.store.tables import JobEventRow, JobRow

log = logging.getLogger(__name__)

LIVE_STATES = tuple(state.value for state in JobState if not state.terminal)
#: The columns a scheduler's report fills in: a poll writes these (and ``updated_at``)
#: and no other, so it never overwrites a column that another writer owns.
REPORTED = (
    "state",
    "reason",
    "exit_code",
    "signal",
    "name",
    "submit_time",
    "start_time",
    "end_time",
    "working_directory",
    "stdout",
    "stderr",
    "time_limit",
    "node_list",
)


# Built once: the hot writes bind only their values.
_INSERT_JOB = insert(JobRow).returning(JobRow.pk)
_INSERT_EVENT = insert(JobEventRow).returning(JobEventRow.id)
_UPDATE_JOB = (
    update(JobRow)
    .where(JobRow.pk == bindparam("key"))
    .values(
        {
            **{column: bindparam(f"v_{column}") for column in REPORTED},
            "updated_at": bindparam("now"),
        }
    )
)
_SET_NATIVE_ID = (
    update(JobRow).where(JobRow.pk == bindparam("key")).values(native_id=bindparam("native_id"))
)


@dataclass(slots=True)
class StateChange:
    """One recorded change of a job's state (a row of ``job_events``), as plain data."""

    job_pk: int
    state: str
    time: datetime
    reason: str | None = None
    exit_code: int | None = None
    signal: int | None = None
    id: int = 0


@dataclass(slots=True)
class JobWrites:
    """What one watcher poll writes, decided by the jobs domain: rows of array tasks seen
    for the first time, rows that changed, and the state changes to record."""

    created: list[JobRow] = field(default_factory=list)
    updated: list[JobRow] = field(default_factory=list)
    events: list[tuple[JobRow, StateChange]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class JobFilter:
    """A listing request: one owner's (None: every owner's, for an admin) or one project's
    jobs on one system, newest first."""

    system: str
    owner: str | None
    states: Sequence[str] = ()
    name: str | None = None
    before_pk: int | None = None
    limit: int = 100
    #: A project's jobs, whoever submitted them, instead of ``owner``'s.
    project: str | None = None


class _RecentRows:
    """Rows this process read or wrote lately, so a status poll needs no database read.

    A finished job's row never changes, so it is good until evicted. A live job's row is
    written only by this process's watcher and submits, which update the entry as they
    write; ``ttl`` bounds how long another replica's write could go unseen.
    """

    def __init__(self, ttl: float, size: int = 10_000) -> None:
        self._ttl = ttl
        self._size = size
        self._rows: dict[tuple[str, str], tuple[dict[str, Any], float]] = {}

    def get(self, key: tuple[str, str]) -> JobRow | None:
        entry = self._rows.get(key)
        if entry is None:
            return None
        values, read_at = entry
        if not JobState(values["state"]).terminal and time.monotonic() - read_at > self._ttl:
            return None
        return JobRow(**values)

    def forget(self, row: JobRow) -> None:
        """Drop the row's entry: the next read of it goes to the database."""
        self._rows.pop((row.system, row.native_id or ""), None)

    def put(self, row: JobRow) -> None:
        if row.native_id is None:
            return
        self._rows.pop((row.system, row.native_id), None)  # re-insert: newest last
        self._rows[(row.system, row.native_id)] = (_values(row), time.monotonic())
        if len(self._rows) > self._size:
            del self._rows[next(iter(self._rows))]


def _values(row: JobRow) -> dict[str, Any]:
    return {column.key: getattr(row, column.key) for column in JobRow.__table__.columns}


class JobStore:
    """Reads and writes jobs. A row with no ``native_id`` is a submit still in flight."""

    def __init__(self, database: Database, cache_seconds: float = 5.0) -> None:
        self._db = database
        self._recent = _RecentRows(cache_seconds)
        self._reads: Coalesced[tuple[str, str], dict[str, Any] | None] = Coalesced()
        self._unreadable: set[int] = set()  # keys of rows logged as unreadable

    async def add(self, row: JobRow) -> JobRow:
        row.created_at = row.updated_at = utcnow()
        values = _insert_values(row)
        row.pk = await self._db.write_now(
            lambda connection: connection.execute(_INSERT_JOB, values).scalar_one()
        )
        return row

    async def by_idempotency_key(self, owner: str, key: str) -> JobRow | None:
        query = select(JobRow).where(JobRow.owner == owner, JobRow.idempotency_key == key)
        async with self._db.reader() as session:
            return (await session.scalars(query)).first()

    async def mark_submitted(self, row: JobRow, native_id: str) -> StateChange:
        """Record the scheduler's id and the first event, in one transaction."""
        event = StateChange(job_pk=row.pk, state=row.state, time=utcnow())
        values = _event_values(event)

        def write(connection: Connection) -> int:
            connection.execute(_SET_NATIVE_ID, {"key": row.pk, "native_id": native_id})
            return int(connection.execute(_INSERT_EVENT, values).scalar_one())

        event.id = await self._db.write_now(write)
        row.native_id = native_id
        self._recent.put(row)
        return event

    async def fill(self, row: JobRow, details: dict[str, Any]) -> None:
        """Give ``row`` the ``details`` (reported columns) it has none of, here and in the
        database, where a poll may have been first: a value there is never replaced."""
        if not details:
            return
        values = {
            name: func.coalesce(getattr(JobRow, name), value) for name, value in details.items()
        }
        statement = update(JobRow).where(JobRow.pk == row.pk).values(values)
        await self._db.write_now(lambda connection: connection.execute(statement))
        for name, value in details.items():
            if getattr(row, name) is None:
                setattr(row, name, value)
        self._recent.forget(row)  # a poll may have written more meanwhile than ``row`` has

    async def remove(self, pk: int) -> None:
        async with self._db.session() as session, session.begin():
            await session.execute(delete(JobRow).where(JobRow.pk == pk))

    async def get(self, system: str, native_id: str) -> JobRow | None:
        """The job, from the recent rows when fresh, else one Core read (the hottest path)."""
        cached = self._recent.get((system, native_id))
        if cached is not None:
            return cached
        key = (system, native_id)
        found = await self._reads.load(key, lambda: self._read(system, native_id))
        return None if found is None else JobRow(**found)  # each caller its own row

    async def _read(self, system: str, native_id: str) -> dict[str, Any] | None:
        table = JobRow.__table__
        query = select(table).where(table.c.system == system, table.c.native_id == native_id)
        async with self._db.read_connection() as connection:
            found = (await connection.execute(query)).mappings().first()
        if found is None:
            return None
        self._recent.put(JobRow(**found))
        return dict(found)

    async def find(self, wanted: JobFilter) -> list[JobRow]:
        query = select(JobRow).where(JobRow.system == wanted.system, JobRow.native_id.is_not(None))
        if wanted.project is not None:
            query = query.where(JobRow.project == wanted.project)
        elif wanted.owner is not None:
            query = query.where(JobRow.owner == wanted.owner)
        if wanted.states:
            query = query.where(JobRow.state.in_(wanted.states))
        if wanted.name is not None:
            query = query.where(JobRow.name == wanted.name)
        if wanted.before_pk is not None:
            query = query.where(JobRow.pk < wanted.before_pk)
        query = query.order_by(JobRow.pk.desc()).limit(wanted.limit)
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def live(self, system: str) -> list[JobRow]:
        """Jobs the watcher must follow: submitted and not yet ended."""
        wanted = (
            JobRow.system == system,
            JobRow.native_id.is_not(None),
            JobRow.state.in_(LIVE_STATES),
        )
        try:
            async with self._db.reader() as session:
                rows = list(await session.scalars(select(JobRow).where(*wanted)))
        except (ValueError, TypeError, OverflowError):  # a row no longer reads: skip it
            rows = await self._readable(select(JobRow.pk).where(*wanted))
        for row in rows:  # the watcher reads these every interval: keep polls off the database
            self._recent.put(row)
        return rows

    async def _readable(self, keys: Select[int]) -> list[JobRow]:
        """The rows of ``keys`` read one by one; a row that cannot be read is logged once
        and left out, so it never stops the watcher from following the others."""
        rows = []
        async with self._db.reader() as session:
            for pk in list(await session.scalars(keys)):
                try:
                    rows.append(
                        (await session.scalars(select(JobRow).where(JobRow.pk == pk))).one()
                    )
                except (ValueError, TypeError, OverflowError):
                    if pk not in self._unreadable:
                        self._unreadable.add(pk)
                        log.exception("job row %d cannot be read: skipped", pk)
        return rows

    async def in_flight(self, system: str, before: datetime) -> list[JobRow]:
        """Submits that were started before ``before`` and never recorded an id."""
        query = select(JobRow).where(
            JobRow.system == system, JobRow.native_id.is_(None), JobRow.created_at < before
        )
        async with self._db.reader() as session:
            return list(await session.scalars(query))

    async def record(self, writes: JobWrites) -> list[tuple[JobRow, StateChange]]:
        """Write what a poll decided, in one transaction of Core statements (one thread
        hop on SQLite), so a poll over many jobs costs the event loop little. New rows get
        their keys and events their ids; the events written are returned.

        If that transaction fails, each job is written in a transaction of its own, and a
        job whose write fails is logged and left out: one bad row never stops the others.
        """
        if not (writes.created or writes.updated):
            return []
        try:
            await self._db.write(lambda connection: _write(connection, writes))
        except Exception:  # whatever one row did, the others are written
            return await self._record_each(writes)
        self._remember(writes)
        return writes.events

    async def _record_each(self, writes: JobWrites) -> list[tuple[JobRow, StateChange]]:
        written: list[tuple[JobRow, StateChange]] = []
        for one in _per_job(writes):
            try:
                await self._db.write(functools.partial(_write, writes=one))
            except Exception:  # logged; the job is tried again next poll
                row = (*one.created, *one.updated)[0]
                log.exception("cannot record job %s on %s: skipped", row.native_id, row.system)
                continue
            self._remember(one)
            written += one.events
        return written

    def _remember(self, writes: JobWrites) -> None:
        for row in (*writes.created, *writes.updated):
            self._recent.put(row)

    async def events_after(self, job_pk: int, after_id: int) -> list[StateChange]:
        table = JobEventRow.__table__
        query = (
            select(table)
            .where(table.c.job_pk == job_pk, table.c.id > after_id)
            .order_by(table.c.id)
        )
        async with self._db.read_connection() as connection:
            found = (await connection.execute(query)).mappings().all()
        return [StateChange(**row) for row in found]


def _per_job(writes: JobWrites) -> list[JobWrites]:
    """``writes`` split into one set of writes per job, each with that job's events."""
    split = [JobWrites(created=[row]) for row in writes.created]
    split += [JobWrites(updated=[row]) for row in writes.updated]
    for one in split:
        row = (*one.created, *one.updated)[0]
        one.events = [(owner, event) for owner, event in writes.events if owner is row]
    return split


def _insert_values(row: JobRow) -> dict[str, Any]:
    return {key: value for key, value in _values(row).items() if key != "pk"}


def _update_values(row: JobRow, now: datetime) -> dict[str, Any]:
    return {"key": row.pk, "now": now, **{f"v_{f}": getattr(row, f) for f in REPORTED}}


def _event_values(event: StateChange) -> dict[str, Any]:
    return {
        "job_pk": event.job_pk,
        "state": event.state,
        "reason": event.reason,
        "exit_code": event.exit_code,
        "signal": event.signal,
        "time": event.time,
    }


def _write(connection: Connection, writes: JobWrites) -> None:
    for task in writes.created:
        task.pk = connection.execute(_INSERT_JOB, _insert_values(task)).scalar_one()
    if writes.updated:
        now = utcnow()
        connection.execute(_UPDATE_JOB, [_update_values(row, now) for row in writes.updated])
    for row, event in writes.events:
        event.job_pk = row.pk  # a new task's key is known only now
        event.id = connection.execute(_INSERT_EVENT, _event_values(event)).scalar_one()
