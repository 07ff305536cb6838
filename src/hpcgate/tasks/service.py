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
from collections.abc import Awaitable, Callable
from typing import Any

from hpcgate.errors import Conflict, HpcgateError, NotFound
from hpcgate.principal import Principal, Scope
from hpcgate.store.tables import TaskRow, utcnow
from hpcgate.store.tasks import TaskStore
from hpcgate.tasks.models import Task, TaskProgress, TaskState

log = logging.getLogger("hpcgate.tasks")

PROBLEM_BASE = "https://hpcgate.dev/problems/"
SAVE_EVERY = 1.0
CANCEL_WAIT = 10.0
INTERRUPTED = "the gateway stopped while this task ran; it did not finish"


class Progress:
    """What a task's work reports as it goes; cheap to call often."""

    def __init__(self, unit: str) -> None:
        self.value = TaskProgress(unit=unit)
        self.changed = False

    def update(self, done: int, total: int | None = None) -> None:
        self.value = TaskProgress(done=done, total=total, unit=self.value.unit)
        self.changed = True


TaskWork = Callable[[Progress], Awaitable[dict[str, Any] | None]]


def problem(error: HpcgateError) -> dict[str, Any]:
    return {
        "type": PROBLEM_BASE + error.slug,
        "title": error.title,
        "status": error.status,
        "detail": error.detail,
    }


def _interrupted() -> str:
    return json.dumps(
        {"type": PROBLEM_BASE + "interrupted", "title": "Interrupted", "status": 500,
         "detail": INTERRUPTED}
    )  # fmt: skip


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


class TaskService:
    def __init__(self, store: TaskStore) -> None:
        self._store = store
        self._running: dict[str, tuple[asyncio.Task[None], Progress]] = {}
        self._stopping = False

    async def recover(self) -> int:
        """At start: tasks a previous process left running are failed, with the reason."""
        return await self._store.end_running(TaskState.FAILED.value, _interrupted(), utcnow())

    async def stop(self) -> None:
        """At shutdown: stop the work and record every running task failed."""
        self._stopping = True
        for job, _ in list(self._running.values()):
            job.cancel()
        for job, _ in list(self._running.values()):
            with contextlib.suppress(BaseException):
                await job
        await self.recover()

    async def start(
        self,
        who: Principal,
        system: str,
        kind: str,
        request: dict[str, Any],
        work: TaskWork,
        unit: str = "bytes",
    ) -> Task:
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
        self._running[row.id] = (job, progress)
        return to_task(row)

    async def _run(self, task_id: str, work: TaskWork, progress: Progress) -> None:
        saver = asyncio.create_task(self._save_progress(task_id, progress))
        try:
            result = await work(progress)
            await self._end(task_id, TaskState.COMPLETED, progress, result=json.dumps(result))
        except asyncio.CancelledError:
            if self._stopping:
                await self._end(task_id, TaskState.FAILED, progress, error=_interrupted())
            else:
                await self._end(task_id, TaskState.CANCELLED, progress)
        except HpcgateError as exc:
            await self._end(task_id, TaskState.FAILED, progress, error=json.dumps(problem(exc)))
        except Exception as exc:
            log.exception("task %s failed", task_id, exc_info=exc)
            internal = HpcgateError("an unexpected error was logged")
            await self._end(
                task_id, TaskState.FAILED, progress, error=json.dumps(problem(internal))
            )
        finally:
            saver.cancel()
            self._running.pop(task_id, None)

    async def _end(self, task_id: str, state: TaskState, progress: Progress, **values: Any) -> None:
        values.update(
            state=state.value, progress=progress.value.model_dump_json(), ended_at=utcnow()
        )
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self._store.update(task_id, **values))

    async def _save_progress(self, task_id: str, progress: Progress) -> None:
        while True:
            await asyncio.sleep(SAVE_EVERY)
            if progress.changed:
                progress.changed = False
                await self._store.update(task_id, progress=progress.value.model_dump_json())

    async def _own(self, who: Principal, task_id: str) -> TaskRow:
        row = await self._store.get(task_id)
        if row is None or row.owner != who.user:
            raise NotFound(f"no task {task_id!r}")
        return row

    async def get(self, who: Principal, task_id: str) -> Task:
        row = await self._own(who, task_id)
        running = self._running.get(task_id)
        return to_task(row, running[1].value if running and row.state == "running" else None)

    async def list(self, who: Principal, limit: int) -> list[Task]:
        return [to_task(row) for row in await self._store.mine(who.user, limit)]

    async def cancel(self, who: Principal, task_id: str) -> Task:
        who.require(Scope.FILES_WRITE)
        row = await self._own(who, task_id)
        running = self._running.get(task_id)
        if row.state != TaskState.RUNNING.value or running is None:
            raise Conflict(f"task {task_id} has already ended ({row.state})")
        running[0].cancel()
        await asyncio.wait({running[0]}, timeout=CANCEL_WAIT)
        return await self.get(who, task_id)
