"""Running long operations in the background, on behalf of a principal.

A task is recorded (``running``) before its work starts, so it cannot be lost; it ends
``completed`` with a result, ``failed`` with a problem document, or ``cancelled``. Progress
is kept in memory as the work reports it and written to the database at most once a
second. Tasks run inside the gateway process: one still running when the process stops is
recorded ``failed`` (at shutdown, or at the next start after a crash), never left running.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from hpcgate.clock import utcnow
from hpcgate.model.errors import PROBLEM_BASE, Conflict, HpcgateError, Interrupted, NotFound
from hpcgate.model.principal import Principal, Scope
from hpcgate.model.tasks import Task, TaskProgress, TaskState
from hpcgate.store.tables import TaskRow
from hpcgate.store.tasks import TaskStore

log = logging.getLogger("hpcgate.tasks")

SAVE_EVERY = 1.0
CANCEL_WAIT = 10.0
INTERRUPTED = "the gateway stopped while this task ran; it did not finish"


class Progress:
    """What a task's work reports as it goes. Cheap to call often: it keeps only the latest
    report in memory; the service saves it and serves it."""

    def __init__(self, unit: str) -> None:
        self.unit = unit
        self.done = 0
        self.total: int | None = None
        self.message: str | None = None
        self.changed = False

    def update(self, done: int, total: int | None = None, message: str | None = None) -> None:
        """Replace the last report: ``done`` of ``total`` (None: unknown) ``unit``."""
        self.done, self.total, self.message = done, total, message
        self.changed = True

    @property
    def value(self) -> TaskProgress:
        return TaskProgress(done=self.done, total=self.total, unit=self.unit, message=self.message)


TaskWork = Callable[[Progress], Awaitable[dict[str, Any] | None]]
"""A task's body: reports progress, returns the result (JSON-serialisable) or raises."""


def problem(error: HpcgateError) -> dict[str, Any]:
    """The problem document a failed task carries, shaped as the API's error answers."""
    return {
        "type": PROBLEM_BASE + error.slug,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }


_INTERRUPTED = json.dumps(problem(Interrupted(INTERRUPTED)))
_INTERNAL = json.dumps(problem(HpcgateError("an unexpected error was logged")))


def to_task(row: TaskRow, progress: TaskProgress | None = None) -> Task:
    return Task(
        id=row.id,
        kind=row.kind,
        system=row.system,
        state=TaskState(row.state),
        progress=progress or TaskProgress.model_validate_json(row.progress),
        request=json.loads(row.request),
        result=json.loads(row.result) if row.result else None,
        error=json.loads(row.error) if row.error else None,
        created_at=row.created_at,
        updated_at=row.updated_at,
        ended_at=row.ended_at,
    )


@dataclass(frozen=True, slots=True)
class _Running:
    job: asyncio.Task[None]
    progress: Progress


class TaskService:
    """Starts the work of long operations and answers for the caller's tasks.

    Every read is scoped to the caller: another user's task is indistinguishable from one
    that does not exist (404).
    """

    def __init__(
        self, store: TaskStore, save_every: float = SAVE_EVERY, cancel_wait: float = CANCEL_WAIT
    ) -> None:
        self._store = store
        self._save_every = save_every
        self._cancel_wait = cancel_wait
        self._running: dict[str, _Running] = {}
        self._stopping = False

    async def recover(self) -> int:
        """At start: tasks a previous process left running are failed, with the reason.

        Returns how many. Every ``running`` row counts as left over, so gateway replicas
        sharing one database must not run tasks (or must not restart while others do).
        """
        return await self._store.end_running(TaskState.FAILED.value, _INTERRUPTED, utcnow())

    async def stop(self) -> None:
        """At shutdown: cancel the work of this process's tasks and record them failed."""
        self._stopping = True
        running = dict(self._running)
        for entry in running.values():
            entry.job.cancel()
        if running:
            jobs = [entry.job for entry in running.values()]
            await asyncio.wait(jobs, timeout=self._cancel_wait)
        for task_id, entry in running.items():
            if not _recorded(entry.job):
                log.warning("task %s did not record its end; recording it failed", task_id)
                await self._record_end(task_id, TaskState.FAILED, {"error": _INTERRUPTED})

    async def start(
        self,
        who: Principal,
        system: str,
        kind: str,
        request: dict[str, Any],
        work: TaskWork,
        unit: str = "bytes",
    ) -> Task:
        """Record a task for ``who``, then run ``work`` in the background. The caller
        checks scopes and arguments before: the work's own errors end the task failed."""
        progress = Progress(unit)
        now = utcnow()
        row = TaskRow(
            id=uuid.uuid4().hex,
            owner=who.user,
            system=system,
            kind=kind,
            state=TaskState.RUNNING.value,
            progress=progress.value.model_dump_json(),
            request=json.dumps(request),
            created_at=now,
            updated_at=now,
        )
        await self._store.add(row)
        job = asyncio.create_task(self._run(row.id, work, progress), name=f"task-{row.id}")
        self._running[row.id] = _Running(job, progress)
        return to_task(row)

    async def _run(self, task_id: str, work: TaskWork, progress: Progress) -> None:
        saver = asyncio.create_task(self._save_progress(task_id, progress))
        try:
            state, columns = await self._outcome(task_id, work, progress)
        finally:
            saver.cancel()
        await _to_the_end(self._finish(task_id, saver, state, progress, columns))

    async def _outcome(
        self, task_id: str, work: TaskWork, progress: Progress
    ) -> tuple[TaskState, dict[str, str]]:
        """Run the work; how it ended, as the state and the columns that record it."""
        try:
            return TaskState.COMPLETED, {"result": json.dumps(await work(progress))}
        except asyncio.CancelledError:
            if self._stopping:
                return TaskState.FAILED, {"error": _INTERRUPTED}
            return TaskState.CANCELLED, {}
        except HpcgateError as exc:
            return TaskState.FAILED, {"error": json.dumps(problem(exc))}
        except Exception:
            log.exception("task %s failed unexpectedly", task_id)
            return TaskState.FAILED, {"error": _INTERNAL}

    async def _finish(
        self,
        task_id: str,
        saver: asyncio.Task[None],
        state: TaskState,
        progress: Progress,
        columns: dict[str, str],
    ) -> None:
        try:
            await asyncio.wait({saver})  # a late progress write must not land after the end
            columns["progress"] = progress.value.model_dump_json()
            await self._record_end(task_id, state, columns)
        except Exception:
            log.exception("the end of task %s could not be recorded", task_id)
        finally:
            self._running.pop(task_id, None)

    async def _record_end(self, task_id: str, state: TaskState, columns: dict[str, str]) -> None:
        await self._store.update(task_id, state=state.value, ended_at=utcnow(), **columns)
        self._running.pop(task_id, None)

    async def _save_progress(self, task_id: str, progress: Progress) -> None:
        while True:
            await asyncio.sleep(self._save_every)
            if not progress.changed:
                continue
            progress.changed = False
            try:
                await self._store.update(task_id, progress=progress.value.model_dump_json())
            except Exception:
                progress.changed = True
                log.warning("could not save the progress of task %s", task_id, exc_info=True)

    async def _own(self, who: Principal, task_id: str) -> TaskRow:
        row = await self._store.get(task_id)
        if row is None or row.owner != who.user or not who.sees_system(row.system):
            raise NotFound(f"no task {task_id!r}")
        return row

    def _view(self, row: TaskRow) -> Task:
        """The task, with the live progress if it runs in this process."""
        running = self._running.get(row.id)
        if running is None or row.state != TaskState.RUNNING:
            return to_task(row)
        return to_task(row, running.progress.value)

    async def get(self, who: Principal, task_id: str) -> Task:
        return self._view(await self._own(who, task_id))

    async def list(self, who: Principal, limit: int) -> list[Task]:
        """The caller's newest ``limit`` tasks, newest first."""
        rows = await self._store.mine(who.user, limit)
        return [self._view(row) for row in rows if who.sees_system(row.system)]

    async def cancel(self, who: Principal, task_id: str) -> Task:
        """Cancel the caller's running task and wait (up to ``cancel_wait`` s) for its work
        to stop. Returns the task as it then is: ``cancelled``, or as it ended if it ended
        first. A task that has already ended is a Conflict."""
        who.require(Scope.FILES_WRITE)
        running = self._running.get(task_id)
        row = await self._own(who, task_id)
        if running is None:
            raise Conflict(_not_running(row))
        running.job.cancel()
        await asyncio.wait({running.job}, timeout=self._cancel_wait)
        if running.job.cancelled():  # cancelled before it began: nothing recorded its end
            await self._record_end(task_id, TaskState.CANCELLED, {})
        return await self.get(who, task_id)


def _not_running(row: TaskRow) -> str:
    if row.state == TaskState.RUNNING:
        return f"task {row.id} runs in another gateway process; cancel it there"
    return f"task {row.id} has already ended ({row.state})"


def _recorded(job: asyncio.Task[None]) -> bool:
    """Whether ``_run`` recorded the task's end: not if the job still runs (its work ignores
    the cancel) or was cancelled before it began (then none of its code ran)."""
    return job.done() and not job.cancelled()


async def _to_the_end(work: Coroutine[Any, Any, None]) -> None:
    """Await ``work`` to its end even if the caller is cancelled meanwhile: a task's end is
    always recorded, and a cancel that comes just as the work ends changes nothing."""
    inner = asyncio.ensure_future(work)
    while not inner.done():
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(inner)
