"""The audit log: who changed what, when, from where, and how it ended.

Every state-changing request (POST, PUT, PATCH, DELETE) and every WebSocket connect is one
:class:`Entry`, recorded as its answer begins, just after its first piece is sent
(``api/audit.py`` makes them). Recording costs the request one JSON line to the
``hpcgate.audit`` logger and an append to a list in memory; a loop of the gateway's writes
the list in batches (one INSERT each), at most ``flush_seconds`` behind, and at stop. The
line is written first: a crash loses at most the records of the last unwritten batch from
the table, never from the log lines. While the database cannot be written, records wait in
memory up to :data:`PENDING_MAX`; past that the newest are dropped from the table (their
lines stay), and a warning says how many.

The table is append-only: nothing updates a record, and the retention prune (``[audit]
keep_days``) is the only delete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta

from hpcgate.clock import utcnow
from hpcgate.config import AuditConfig
from hpcgate.model.audit import AuditPage, AuditRecord
from hpcgate.store.audit import AuditFilter, AuditStore
from hpcgate.store.tables import AuditRow

lines = logging.getLogger("hpcgate.audit")
log = logging.getLogger(__name__ + ".writer")

PENDING_MAX = 100_000
BATCH_MAX = 1000


@dataclass(frozen=True, slots=True)
class Entry:
    """One record, as the request left it."""

    at: datetime
    user: str | None
    token_id: str | None
    client: str | None
    method: str
    route: str
    resource: dict[str, str] = field(default_factory=dict)
    status: int = 0
    address: str | None = None
    request_id: str = ""

    def fields(self) -> dict[str, object]:
        """The record's fields by name (dataclasses.asdict copies deeply: slower)."""
        return {name: getattr(self, name) for name in _FIELDS}

    def line(self) -> str:
        """The record as one JSON line."""
        return _JSON.encode(self.fields() | {"at": self.at.isoformat()})

    def row(self) -> dict[str, object]:
        return self.fields() | {"resource": _JSON.encode(self.resource)}


_FIELDS = tuple(f.name for f in fields(Entry))
_JSON = json.JSONEncoder(separators=(",", ":"))


def _record(row: AuditRow) -> AuditRecord:
    try:
        resource = json.loads(row.resource)
    except ValueError:
        resource = {}
    return AuditRecord(
        id=str(row.pk),
        at=row.at,
        user=row.user,
        token_id=row.token_id,
        client=row.client,
        method=row.method,
        route=row.route,
        resource=resource if isinstance(resource, dict) else {},
        status=row.status,
        address=row.address,
        request_id=row.request_id,
    )


class AuditLog:
    """Records entries and reads them back; :meth:`start` runs the writer and the prune."""

    def __init__(
        self, store: AuditStore, config: AuditConfig, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._store = store
        self._config = config
        self._clock = clock
        self._pending: list[Entry] = []
        self._dropped = 0
        self._wake = asyncio.Event()
        self._writing = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    def record(self, entry: Entry) -> None:
        """Logs the entry's line and queues it for the table (no I/O but the line)."""
        if lines.isEnabledFor(logging.INFO):
            lines.info(entry.line())
        if len(self._pending) >= PENDING_MAX:
            self._dropped += 1
            return
        self._pending.append(entry)
        if len(self._pending) >= BATCH_MAX:
            self._wake.set()

    async def flush(self) -> None:
        """Writes every queued entry now (a batch that fails goes back to the queue)."""
        async with self._writing:
            while self._pending:
                batch = self._pending[:BATCH_MAX]
                del self._pending[:BATCH_MAX]
                try:
                    await self._store.add_many([entry.row() for entry in batch])
                except BaseException:
                    self._pending[:0] = batch
                    raise
        if self._dropped:
            log.warning("%d audit records were not stored (their log lines were)", self._dropped)
            self._dropped = 0

    async def page(self, where: AuditFilter, limit: int) -> AuditPage:
        """Up to ``limit`` records, newest first (what is queued is written first)."""
        await self.flush()
        rows = await self._store.page(where, limit + 1)
        records = [_record(row) for row in rows[:limit]]
        more = len(rows) > limit and records
        return AuditPage(items=records, next_cursor=records[-1].id if more else None)

    async def prune(self) -> int:
        """The retention prune: how many records past ``keep_days`` were deleted."""
        return await self._store.prune(self._clock() - timedelta(days=self._config.keep_days))

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._write()), asyncio.create_task(self._prune())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.flush()
        except Exception:
            log.exception("%d audit records were not stored at stop", len(self._pending))

    async def _write(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self._config.flush_seconds)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # the database away for a while: the next round tries again
                log.exception("writing %d audit records failed", len(self._pending))

    async def _prune(self) -> None:
        while True:
            try:
                await self.prune()
            except Exception:
                log.exception("the audit log's retention prune failed")
            await asyncio.sleep(self._config.prune_seconds)
