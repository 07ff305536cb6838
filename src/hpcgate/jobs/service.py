"""Job operations on behalf of a principal: submit, read, list, cancel, output, events.

Everything here is scoped to the caller: another user's job is indistinguishable from a
job that does not exist (404), unless it was submitted in a project the caller has a role
in, which then says what the caller may do with it (a viewer reads, a member also
cancels). What a member does to another's job runs as the job's owner's account. A token
limited to a project sees only that project's jobs.
"""

from __future__ import annotations

import hashlib
import logging
import posixpath
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from hpcgate.accounts import Account
from hpcgate.clock import utcnow
from hpcgate.cluster import Cluster
from hpcgate.jobs.events import EventBus, JobEvents
from hpcgate.jobs.output import JobOutput, Stream
from hpcgate.jobs.rows import to_job
from hpcgate.jobs.transitions import details
from hpcgate.model.bounds import KEY_MAX
from hpcgate.model.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    HpcgateError,
    IdempotencyInProgress,
    NotFound,
    PayloadTooLarge,
    SchedulerRejected,
)
from hpcgate.model.jobs import Job, JobPage, JobSpec, JobState
from hpcgate.model.principal import Principal, Scope
from hpcgate.model.scheduler import SubmitContext
from hpcgate.projects import Projects
from hpcgate.store.jobs import JobFilter, JobStore
from hpcgate.store.tables import JobRow
from hpcgate.target import Target

log = logging.getLogger(__name__)
#: The token id a job's owner acts with for a project member (in the logs).
FOR_PROJECT = "project"


@dataclass(frozen=True, slots=True)
class Submitted:
    job: Job
    created: bool


def _fingerprint(system: str, spec: JobSpec) -> str:
    return hashlib.sha256(f"{system}\n{spec.model_dump_json()}".encode()).hexdigest()


class JobService:
    def __init__(
        self, store: JobStore, bus: EventBus, max_script_bytes: int, projects: Projects
    ) -> None:
        self._store = store
        self._bus = bus
        self._max_script = max_script_bytes
        self._projects = projects

    async def submit(
        self, target: Target, spec: JobSpec, idempotency_key: str | None = None
    ) -> Submitted:
        who, cluster = target.who, target.cluster
        who.require(Scope.JOBS_WRITE)
        spec = await self._in_project(who, spec)
        self._check_size(spec)
        cluster.scheduler.check(spec)
        await self._check_dependencies(target, spec)
        fingerprint = _fingerprint(target.system, spec)
        spec = await self._check_script_file(target, spec)
        if idempotency_key is not None:
            earlier = await self._store.by_idempotency_key(who.user, idempotency_key)
            if earlier is not None:
                return Submitted(_replay(earlier, fingerprint), created=False)
        account = await target.account()  # before the row: an unmapped caller leaves none
        workdir = spec.working_directory or await target.workdir()
        row = await self._reserve(target, spec, workdir, idempotency_key, fingerprint)
        await self._submit_row(cluster, row, spec, account)
        return Submitted(to_job(row), created=True)

    async def _in_project(self, who: Principal, spec: JobSpec) -> JobSpec:
        """The spec in the project it names (the caller's role must allow a submit), or in
        the one project its token is limited to."""
        limit = who.restriction.project if who.restriction is not None else None
        if spec.project is None and limit is not None:
            spec = spec.model_copy(update={"project": limit})
        if spec.project is not None:
            await self._projects.require(who, spec.project, Scope.JOBS_WRITE)
        return spec

    async def _check_dependencies(self, target: Target, spec: JobSpec) -> None:
        """Dependencies name only the caller's own jobs on this system: another user's job
        is refused exactly as a job that does not exist, before the scheduler sees it."""
        for job_id in _dependency_ids(spec.dependencies):
            row = await self._store.get(target.system, job_id)
            if row is None and "_" in job_id:  # an array task: its array's row
                row = await self._store.get(target.system, job_id.partition("_")[0])
            if row is None or row.owner != target.who.user:
                raise SchedulerRejected(
                    f"Job dependency problem: no job {job_id!r} on system {target.system!r}"
                )

    async def _check_script_file(self, target: Target, spec: JobSpec) -> JobSpec:
        """A ``script_path`` script is read as the caller's account and held to the rules
        of an inline one (no dependency directives). A relative path starts at the
        caller's home; the scheduler gets the path made absolute, so it reads the file
        that was checked by the same name."""
        if spec.script_path is None:
            return spec
        path = posixpath.join(await target.home(), spec.script_path)
        fs = target.cluster.transport.files(await target.account())
        try:  # a link is followed, as the scheduler follows it
            text = await fs.read(await fs.resolve(path, follow=True), 0, self._max_script + 1)
        except (NotFound, Forbidden, BadRequest) as exc:
            why = f"cannot read script_path {path}: {exc.detail}"
            raise SchedulerRejected(why, fields=["script_path"]) from None
        if len(text) > self._max_script:
            raise PayloadTooLarge(f"the script exceeds the limit of {self._max_script} bytes")
        target.cluster.scheduler.check_script(text.decode(errors="replace"), "script_path")
        return spec.model_copy(update={"script_path": path})

    def _check_size(self, spec: JobSpec) -> None:
        if spec.script is not None and len(spec.script.encode()) > self._max_script:
            raise PayloadTooLarge(f"the script exceeds the limit of {self._max_script} bytes")

    async def _reserve(
        self, target: Target, spec: JobSpec, workdir: str, key: str | None, fingerprint: str
    ) -> JobRow:
        """Record the submit before it happens, so a crash cannot lose or repeat it."""
        row = JobRow(
            system=target.system,
            owner=target.who.user,
            account=target.who.account,
            project=spec.project,
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
        except (SchedulerRejected, BadRequest, NotFound, Forbidden):
            # refused (an agent's policy, or no agent that may serve the account): nothing
            # was submitted, so nothing is left for the watcher to settle
            await self._store.remove(row.pk)
            raise
        except HpcgateError:
            if not cluster.scheduler.recoverable_submit:
                await self._store.remove(row.pk)
            raise  # else the watcher settles it by its tag: never lost, never twice
        self._bus.publish(row.pk, await self._store.mark_submitted(row, native_id))
        if spec.name is None:
            await self._first_details(cluster, row)

    async def _first_details(self, cluster: Cluster, row: JobRow) -> None:
        """The details the scheduler gave a job it just took (a name left to it: the
        script's directive or its default), asked once, so the submit's answer shows what
        later reads show. Its state stays the watcher's to follow; if the query fails, the
        watcher brings the details at its next poll."""
        native_id = row.native_id or ""
        try:
            for report in await cluster.status([native_id]):
                if report.native_id == native_id:
                    await self._store.fill(row, details(row, report))
        except HpcgateError as exc:
            log.info("job %s on %s: no details after its submit: %s", native_id, cluster.name, exc)
        except Exception:  # the job is submitted: its answer must not fail for its details
            log.exception("job %s on %s: its details after the submit", native_id, cluster.name)

    async def _own_row(self, target: Target, job_id: str, scope: Scope) -> JobRow:
        """The caller's job (or its project's), once it holds ``scope``: another's is a
        job that is not there."""
        return (await self._row(target, job_id, scope))[0]

    async def _row(self, target: Target, job_id: str, scope: Scope) -> tuple[JobRow, Target]:
        """The job and whom to act on it as: the caller for its own job; the job's owner
        for a job of a project whose role lets the caller have ``scope`` (Forbidden if the
        role does not); NotFound for any other job. A token limited to a project acts as
        a member of it only, its own jobs included."""
        who = target.who
        who.require(scope)
        row = await self._store.get(target.system, job_id)
        if row is None or not who.sees_project(row.project):
            raise NotFound(f"no job {job_id!r} on system {target.system!r}")
        mine = row.owner == who.user
        if mine and (who.restriction is None or who.restriction.project is None):
            return row, target
        if row.project is None or await self._projects.role(who, row.project) is None:
            raise NotFound(f"no job {job_id!r} on system {target.system!r}")
        await self._projects.require(who, row.project, scope)
        return row, target if mine else target.as_owner(_owner(row))

    async def get(self, target: Target, job_id: str) -> Job:
        return to_job(await self._own_row(target, job_id, Scope.JOBS_READ))

    async def spec(self, target: Target, job_id: str) -> JobSpec:
        """What the caller's job was submitted with (its script as read at the submit), to
        submit it again."""
        return JobSpec.model_validate_json(
            (await self._own_row(target, job_id, Scope.JOBS_READ)).spec
        )

    async def list(
        self,
        target: Target,
        states: Sequence[JobState],
        name: str | None,
        cursor: str | None,
        limit: int,
        everyone: bool = False,
        user: str | None = None,
        project: str | None = None,
    ) -> JobPage:
        """The caller's jobs; with ``project`` that project's (its role must allow
        reading; a token limited to a project lists that project's); with ``everyone`` or
        another ``user`` (the admin scope only, Forbidden otherwise) every user's or that
        user's."""
        who = target.who
        who.require(Scope.JOBS_READ)
        owner: str | None = who.user
        if project is None and who.restriction is not None:
            project = who.restriction.project
        if everyone or (user is not None and user != owner):
            who.unrestricted()
            who.require(Scope.ADMIN)
            if who.restriction is not None and who.restriction.project is not None:
                raise Forbidden("a token limited to a project lists that project's jobs only")
            owner = user
        if project is not None:
            await self._projects.require(who, project, Scope.JOBS_READ)
        wanted = JobFilter(
            target.system,
            owner,
            [s.value for s in states],
            name,
            _cursor(cursor),
            limit + 1,
            project,
        )
        rows = await self._store.find(wanted)
        more = len(rows) > limit
        rows = rows[:limit]
        return JobPage(
            items=[to_job(r) for r in rows], next_cursor=str(rows[-1].pk) if more else None
        )

    async def cancel(self, target: Target, job_id: str) -> Job:
        """Ask the scheduler to cancel a live job; a job that has already ended is a
        Conflict (as a task's cancel is)."""
        row, acting = await self._row(target, job_id, Scope.JOBS_WRITE)
        if JobState(row.state).terminal:
            raise Conflict(f"job {job_id} has already ended ({row.state})")
        await acting.cluster.cancel(job_id, await acting.account())
        return to_job(row)

    async def output(self, target: Target, job_id: str, stream: Stream) -> JobOutput:
        """The job's stdout or stderr, to read or follow; checked (404) before it starts."""
        row, acting = await self._row(target, job_id, Scope.JOBS_READ)
        return JobOutput(acting, row, stream, self._store, self._bus)

    async def events(self, target: Target, job_id: str) -> JobEvents:
        """The job's state changes, to stream; checked (404) before any is sent."""
        row = await self._own_row(target, job_id, Scope.JOBS_READ)
        return JobEvents(row, self._store, self._bus)


def _owner(row: JobRow) -> Principal:
    """A job's owner, as whom a project member's read or cancel of it runs."""
    scopes = frozenset({Scope.JOBS_READ, Scope.JOBS_WRITE})
    return Principal(row.owner, scopes, token_id=FOR_PROJECT, account=row.account)


def _dependency_ids(dependencies: Sequence[str]) -> list[str]:
    """The job ids in Slurm-style dependencies such as ``afterok:12:13_2``."""
    ids = (job_id for entry in dependencies for job_id in entry.split(":")[1:])
    return list(dict.fromkeys(ids))


def _replay(row: JobRow, fingerprint: str) -> Job:
    if row.request_hash != fingerprint:
        raise BadRequest("this Idempotency-Key was used for a different request")
    if row.native_id is None:
        raise IdempotencyInProgress("a submit with this Idempotency-Key is in progress")
    return to_job(row)


def _cursor(cursor: str | None) -> int | None:
    if cursor is None:
        return None
    if not (cursor.isascii() and cursor.isdigit()):  # isdigit alone takes '²'
        raise BadRequest("invalid cursor")
    return min(int(cursor), KEY_MAX)  # past every key: the list from its newest job
