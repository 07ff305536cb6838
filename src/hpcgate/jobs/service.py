"""Job operations on behalf of a principal: submit, read, list, cancel, output, events.

Everything here is scoped to the caller: another user's job is indistinguishable from a
job that does not exist (404).
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from hpcgate.accounts import Account, Accounts
from hpcgate.cluster import Cluster
from hpcgate.jobs.events import EventBus
from hpcgate.model.errors import (
    BadRequest,
    HpcgateError,
    IdempotencyInProgress,
    NotFound,
    PayloadTooLarge,
    SchedulerRejected,
)
from hpcgate.model.jobs import Job, JobEvent, JobPage, JobSpec, JobState
from hpcgate.model.principal import Principal, Scope
from hpcgate.model.scheduler import SubmitContext
from hpcgate.store.jobs import JobFilter, JobStore, StateChange
from hpcgate.store.tables import JobRow, utcnow
from hpcgate.systems import Systems


@dataclass(frozen=True, slots=True)
class Submitted:
    job: Job
    created: bool


def to_job(row: JobRow) -> Job:
    return Job(
        id=row.native_id or "",
        system=row.system,
        owner=row.owner,
        array_job_id=row.array_job_id,
        name=row.name,
        state=JobState(row.state),
        reason=row.reason,
        exit_code=row.exit_code,
        signal=row.signal,
        submit_time=row.submit_time,
        start_time=row.start_time,
        end_time=row.end_time,
        working_directory=row.working_directory,
        stdout=row.stdout,
        stderr=row.stderr,
        time_limit=row.time_limit,
        nodes=row.node_list.split(",") if row.node_list else [],
    )


def to_event(row: JobRow, event: StateChange) -> JobEvent:
    return JobEvent(
        id=event.id,
        job_id=row.native_id or "",
        state=JobState(event.state),
        reason=event.reason,
        exit_code=event.exit_code,
        signal=event.signal,
        time=event.time,
    )


def _fingerprint(system: str, spec: JobSpec) -> str:
    return hashlib.sha256(f"{system}\n{spec.model_dump_json()}".encode()).hexdigest()


class JobService:
    def __init__(
        self,
        systems: Systems,
        store: JobStore,
        bus: EventBus,
        accounts: Accounts,
        max_script_bytes: int,
    ) -> None:
        self._systems = systems
        self._accounts = accounts
        self._store = store
        self._bus = bus
        self._max_script = max_script_bytes

    async def submit(
        self, who: Principal, system: str, spec: JobSpec, idempotency_key: str | None = None
    ) -> Submitted:
        who.require(Scope.JOBS_WRITE)
        cluster = self._systems.get(system)
        self._check_size(spec)
        cluster.scheduler.check(spec)
        fingerprint = _fingerprint(system, spec)
        if idempotency_key is not None:
            earlier = await self._store.by_idempotency_key(who.user, idempotency_key)
            if earlier is not None:
                return Submitted(_replay(earlier, fingerprint), created=False)
        account = await self.account(who, cluster)
        workdir = spec.working_directory or await self._default_workdir(who, cluster, account)
        row = await self._reserve(who, cluster, spec, workdir, idempotency_key, fingerprint)
        await self._submit_row(cluster, row, spec, account)
        return Submitted(to_job(row), created=True)

    def _check_size(self, spec: JobSpec) -> None:
        if spec.script is not None and len(spec.script.encode()) > self._max_script:
            raise PayloadTooLarge(f"the script exceeds the limit of {self._max_script} bytes")

    async def account(self, who: Principal, cluster: Cluster) -> Account | None:
        """The Unix account the caller's commands run as on this system (None: ours)."""
        return await self._accounts.for_scheduler(
            who, cluster.scheduler.per_user, cluster.transport
        )

    async def _default_workdir(
        self, who: Principal, cluster: Cluster, account: Account | None
    ) -> str:
        template = str(cluster.config.workdir)
        home = await self._accounts.home(account, cluster.transport)
        return template.format(user=who.user, home=home)

    async def _reserve(
        self,
        who: Principal,
        cluster: Cluster,
        spec: JobSpec,
        workdir: str,
        key: str | None,
        fingerprint: str,
    ) -> JobRow:
        """Record the submit before it happens, so a crash cannot lose or repeat it."""
        row = JobRow(
            system=cluster.name,
            owner=who.user,
            name=spec.name,
            state=JobState.PENDING.value,
            submit_time=utcnow(),
            working_directory=workdir,
            time_limit=spec.time_limit,
            tag=uuid.uuid4().hex,
            idempotency_key=key,
            request_hash=fingerprint,
            spec=spec.model_dump_json(),
        )
        try:
            return await self._store.add(row)
        except IntegrityError:
            raise IdempotencyInProgress(
                "a submit with this Idempotency-Key is in progress"
            ) from None

    async def _submit_row(
        self, cluster: Cluster, row: JobRow, spec: JobSpec, account: Account | None
    ) -> None:
        if spec.working_directory is None and row.working_directory:
            await cluster.transport.files(account).mkdir(row.working_directory, parents=True)
        try:
            context = SubmitContext(row.tag, row.working_directory or "")
            native_id = await cluster.submit(spec, context, account)
        except (SchedulerRejected, BadRequest, NotFound):
            await self._store.remove(row.pk)
            raise
        except HpcgateError:
            if not cluster.scheduler.recoverable_submit:
                await self._store.remove(row.pk)
            raise  # else the watcher settles it by its tag: never lost, never twice
        self._bus.publish(row.pk, await self._store.mark_submitted(row, native_id))

    async def _own_row(self, who: Principal, system: str, job_id: str) -> JobRow:
        self._systems.get(system)
        row = await self._store.get(system, job_id)
        if row is None or row.owner != who.user:
            raise NotFound(f"no job {job_id!r} on system {system!r}")
        return row

    async def get(self, who: Principal, system: str, job_id: str) -> Job:
        who.require(Scope.JOBS_READ)
        return to_job(await self._own_row(who, system, job_id))

    async def list(
        self,
        who: Principal,
        system: str,
        states: Sequence[JobState],
        name: str | None,
        cursor: str | None,
        limit: int,
    ) -> JobPage:
        who.require(Scope.JOBS_READ)
        self._systems.get(system)
        wanted = JobFilter(
            system, who.user, [s.value for s in states], name, _cursor(cursor), limit + 1
        )
        rows = await self._store.find(wanted)
        more = len(rows) > limit
        rows = rows[:limit]
        return JobPage(
            items=[to_job(r) for r in rows], next_cursor=str(rows[-1].pk) if more else None
        )

    async def cancel(self, who: Principal, system: str, job_id: str) -> Job:
        """Ask the scheduler to cancel a live job; an ended job is returned unchanged."""
        who.require(Scope.JOBS_WRITE)
        row = await self._own_row(who, system, job_id)
        if not JobState(row.state).terminal:
            cluster = self._systems.get(system)
            await cluster.cancel(job_id, await self.account(who, cluster))
        return to_job(row)

    async def job_row(self, who: Principal, system: str, job_id: str) -> JobRow:
        """The caller's own job row, for the output streams."""
        who.require(Scope.JOBS_READ)
        return await self._own_row(who, system, job_id)

    def cluster(self, system: str) -> Cluster:
        return self._systems.get(system)

    def subscribe(self, row: JobRow) -> AbstractContextManager[asyncio.Queue[StateChange]]:
        return self._bus.subscribe(row.pk)

    async def refresh(self, row: JobRow) -> JobRow:
        return await self._store.get(row.system, row.native_id or "") or row

    async def events(
        self, who: Principal, system: str, job_id: str, after: int
    ) -> AsyncIterator[JobEvent]:
        """The job's state changes after event ``after``, live, until it ends."""
        who.require(Scope.JOBS_READ)
        row = await self._own_row(who, system, job_id)
        with self._bus.subscribe(row.pk) as queue:
            for event in await self._store.events_after(row.pk, after):
                after = event.id
                yield to_event(row, event)
            current = await self._store.get(system, job_id)
            ended = current is not None and JobState(current.state).terminal
            while not (ended and queue.empty()):
                event = await queue.get()
                if event.id > after:
                    after = event.id
                    yield to_event(row, event)
                    ended = ended or JobState(event.state).terminal


def _replay(row: JobRow, fingerprint: str) -> Job:
    if row.request_hash != fingerprint:
        raise BadRequest("this Idempotency-Key was used for a different request")
    if row.native_id is None:
        raise IdempotencyInProgress("a submit with this Idempotency-Key is in progress")
    return to_job(row)


def _cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not cursor.isdigit():
        raise BadRequest("invalid cursor")
    return int(cursor)
