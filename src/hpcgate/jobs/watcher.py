"""One watcher per system: a single status query per interval serves every client.

API reads come from the store; the watcher is the only writer of scheduler-reported state.
It also finishes submits whose outcome a crash left unknown, using the scheduler's tag
idempotency, so an acknowledged job is never lost and never submitted twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import timedelta

from hpcgate.accounts import Account, Accounts
from hpcgate.clock import utcnow
from hpcgate.cluster import Cluster
from hpcgate.jobs.events import EventBus
from hpcgate.jobs.transitions import follow, unlisted_tasks
from hpcgate.model.errors import Forbidden, HpcgateError, SchedulerRejected
from hpcgate.model.jobs import JobSpec
from hpcgate.model.principal import Principal
from hpcgate.model.scheduler import SchedulerJob, SubmitContext
from hpcgate.store.jobs import JobStore, StateChange
from hpcgate.store.tables import JobRow

log = logging.getLogger(__name__)

SLOW_QUERY = 2.0  # seconds after which a status query's slowness triggers a ping
FIRST_POLL = 5.0  # seconds start-up waits for the watchers' first polls (see first_polls)


class JobWatcher:
    def __init__(
        self, cluster: Cluster, store: JobStore, bus: EventBus, accounts: Accounts
    ) -> None:
        self.cluster = cluster
        self._store = store
        self._bus = bus
        self._accounts = accounts
        self._task: asyncio.Task[None] | None = None
        self._unreadable: set[str] = set()  # tags of in-flight rows whose spec cannot be read
        self.polled = asyncio.Event()  # set once the first poll has ended, however it ended

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name=f"watcher-{self.cluster.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _loop(self) -> None:
        while True:
            try:
                await self.poll_once()
            except Exception:  # the loop must outlive any one bad poll
                log.exception("watcher for %s failed", self.cluster.name)
            self.polled.set()
            await asyncio.sleep(self.cluster.config.status_interval)

    async def poll_once(self) -> None:
        """Query the scheduler once for every live job and record what changed."""
        await self._recover_in_flight()
        rows = {row.native_id: row for row in await self._store.live(self.cluster.name)}
        try:
            reports = await self._status([key for key in rows if key is not None])
        except HpcgateError as exc:
            self.cluster.record_health(False, exc.detail)
            return
        self.cluster.record_health(True)
        live = {native_id: row for native_id, row in rows.items() if native_id}
        for row, event in await record(self._store, live, reports):
            self._bus.publish(row.pk, event)

    async def _status(self, native_ids: list[str]) -> list[SchedulerJob]:
        """The status query; if it is slow, a quick ping says meanwhile whether the
        scheduler is down (Slurm's clients retry for ~MessageTimeout before failing)."""
        query = asyncio.ensure_future(self.cluster.status(native_ids))
        done, _ = await asyncio.wait({query}, timeout=SLOW_QUERY)
        if not done:
            try:
                await self.cluster.ping()
            except HpcgateError as exc:
                self.cluster.record_health(False, exc.detail)
        return await query

    async def _recover_in_flight(self) -> None:
        """Settle submits whose outcome is unknown: resubmit with the same tag where the
        scheduler deduplicates tags, else look the tag up (found: keep; absent: drop)."""
        if not self.cluster.scheduler.recoverable_submit:
            return
        grace = timedelta(seconds=self.cluster.config.command_timeout + 5)
        for row in await self._store.in_flight(self.cluster.name, utcnow() - grace):
            try:
                native_id = await self._settle(row)
            except (SchedulerRejected, Forbidden):
                native_id = None  # refused, or its owner has no account now: nothing to keep
            except HpcgateError as exc:
                log.warning("recovering submit %s on %s: %s", row.tag, self.cluster.name, exc)
                continue
            except ValueError:  # its stored spec no longer reads: keep the row, say so once
                if row.tag not in self._unreadable:
                    self._unreadable.add(row.tag)
                    log.exception(
                        "submit %s on %s cannot be read: left as it is", row.tag, self.cluster.name
                    )
                continue
            if native_id is None:
                await self._store.remove(row.pk)
            else:
                self._bus.publish(row.pk, await self._store.mark_submitted(row, native_id))

    async def _settle(self, row: JobRow) -> str | None:
        if not self.cluster.scheduler.idempotent_submit:
            return await self.cluster.find(row.tag, row.created_at)
        spec = JobSpec.model_validate_json(row.spec)
        context = SubmitContext(row.tag, row.working_directory or "")
        return await self.cluster.submit(spec, context, await self._account(row))

    async def _account(self, row: JobRow) -> Account | None:
        """The account ``row``'s submit resolved to, resolved again from what the row keeps
        (its owner and the account a provider named): submitted again, the job runs as its
        owner's account, never as the gateway's own."""
        owner = Principal(row.owner, frozenset(), token_id="", account=row.account)
        per_user = self.cluster.scheduler.per_user
        return await self._accounts.for_scheduler(owner, per_user, self.cluster.transport)


async def first_polls(watchers: Sequence[JobWatcher]) -> None:
    """Start the watchers and wait, up to FIRST_POLL seconds, for each one's first poll, so
    that health and state are known before the first request where the scheduler answers;
    a system that does not (a login that waits out its timeout) is polled on meanwhile, and
    neither delays the gateway's start nor the other systems'."""
    for watcher in watchers:
        watcher.start()
    waits = [asyncio.ensure_future(watcher.polled.wait()) for watcher in watchers]
    if not waits:
        return
    _, late = await asyncio.wait(waits, timeout=FIRST_POLL)
    for wait in late:
        wait.cancel()
    for watcher in watchers:
        if not watcher.polled.is_set():
            log.warning("%s has not answered its first poll yet; it goes on", watcher.cluster.name)


async def record(
    store: JobStore, rows: dict[str, JobRow], seen: Sequence[SchedulerJob]
) -> list[tuple[JobRow, StateChange]]:
    """Record what one poll's reports change in the known ``rows`` (in one transaction,
    or job by job if that fails); the state changes recorded, each once, to publish."""
    for system, native_id in unlisted_tasks(rows, seen):
        found = await store.get(system, native_id)
        if found is not None:
            rows[native_id] = found
    return await store.record(follow(rows, seen, utcnow()))
