"""TaskService on a real SQLite database: outcomes, cancellation, restarts."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from hpcgate.model.errors import PROBLEM_BASE, Conflict, Forbidden, NotFound
from hpcgate.model.principal import DEFAULT_SCOPES, Principal, Scope
from hpcgate.model.tasks import Task, TaskState
from hpcgate.store.db import Database
from hpcgate.store.tasks import TaskStore
from hpcgate.tasks.service import INTERRUPTED, Progress, TaskService

ALICE = Principal("alice", DEFAULT_SCOPES, "t1")
BOB = Principal("bob", DEFAULT_SCOPES, "t2")


@pytest.fixture
async def database(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/hpcgate.db")
    await database.start()
    yield database
    await database.close()


async def ended(service: TaskService, task: Task) -> Task:
    for _ in range(500):
        seen = await service.get(ALICE, task.id)
        if seen.state != TaskState.RUNNING:
            return seen
        await asyncio.sleep(0.01)
    raise AssertionError(f"task {task.id} never ended")


async def test_a_task_completes_with_its_result_and_progress(database: Database) -> None:
    service = TaskService(TaskStore(database))

    async def work(progress: Progress) -> dict[str, Any]:
        for done in (10, 20, 30):
            progress.update(done, 30)
            await asyncio.sleep(0)
        return {"copied": 30}

    started = await service.start(ALICE, "local", "copy", {"source": "a"}, work)
    assert started.state == TaskState.RUNNING and started.request == {"source": "a"}
    done = await ended(service, started)
    assert done.state == TaskState.COMPLETED and done.result == {"copied": 30}
    assert (done.progress.done, done.progress.total) == (30, 30)
    assert done.ended_at is not None
    assert [t.id for t in await service.list(ALICE, 10)] == [started.id]
    assert await service.list(BOB, 10) == []


async def test_a_task_that_raises_fails_with_a_problem(database: Database) -> None:
    service = TaskService(TaskStore(database))

    async def work(progress: Progress) -> dict[str, Any]:
        raise NotFound("no such file: /x")

    done = await ended(service, await service.start(ALICE, "local", "copy", {}, work))
    assert done.state == TaskState.FAILED and done.error is not None
    assert done.error["status"] == 404 and done.error["detail"] == "no such file: /x"
    assert done.error["type"].endswith("/not-found")


async def test_cancel_stops_the_work(database: Database) -> None:
    service = TaskService(TaskStore(database))
    stopped = asyncio.Event()

    async def work(progress: Progress) -> dict[str, Any]:
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return {}

    started = await service.start(ALICE, "local", "copy", {}, work)
    await asyncio.sleep(0.01)
    with pytest.raises(NotFound):
        await service.cancel(BOB, started.id)
    cancelled = await service.cancel(ALICE, started.id)
    assert cancelled.state == TaskState.CANCELLED and stopped.is_set()
    with pytest.raises(Conflict):
        await service.cancel(ALICE, started.id)
    with pytest.raises(NotFound):
        await service.get(BOB, started.id)


async def test_a_stop_and_a_crash_leave_tasks_failed_not_running(database: Database) -> None:
    first = TaskService(TaskStore(database))

    async def forever(progress: Progress) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    stopped = await first.start(ALICE, "local", "copy", {}, forever)
    await asyncio.sleep(0.01)
    await first.stop()
    seen = await first.get(ALICE, stopped.id)
    assert seen.state == TaskState.FAILED and seen.error and seen.error["detail"] == INTERRUPTED

    crashed = TaskService(TaskStore(database))
    left = await crashed.start(ALICE, "local", "copy", {}, forever)
    # the process "dies": a new service on the same database starts up
    restarted = TaskService(TaskStore(database))
    assert await restarted.recover() == 1
    seen = await restarted.get(ALICE, left.id)
    assert seen.state == TaskState.FAILED and seen.error and seen.error["detail"] == INTERRUPTED
    await crashed.stop()


async def test_progress_is_live_in_memory_and_saved_at_intervals(database: Database) -> None:
    service = TaskService(TaskStore(database), save_every=0.05)
    reported, release = asyncio.Event(), asyncio.Event()

    async def work(progress: Progress) -> dict[str, Any]:
        progress.update(5, 10, "halfway")
        reported.set()
        await release.wait()
        progress.update(10, 10)
        return {}

    started = await service.start(ALICE, "local", "extract", {}, work, unit="files")
    await reported.wait()
    live = (await service.get(ALICE, started.id)).progress
    assert (live.done, live.total, live.unit, live.message) == (5, 10, "files", "halfway")
    assert [t.progress.done for t in await service.list(ALICE, 10)] == [5]
    elsewhere = TaskService(TaskStore(database))  # sees only what reached the database
    for _ in range(200):
        if (await elsewhere.get(ALICE, started.id)).progress.done == 5:
            break
        await asyncio.sleep(0.01)
    assert (await elsewhere.get(ALICE, started.id)).progress.message == "halfway"
    release.set()
    done = await ended(service, started)
    assert (done.progress.done, done.progress.message) == (10, None)
    assert (await elsewhere.get(ALICE, started.id)).progress == done.progress


async def test_cancelling_a_completed_task_is_a_conflict(database: Database) -> None:
    service = TaskService(TaskStore(database))

    async def work(progress: Progress) -> None:
        return None

    done = await ended(service, await service.start(ALICE, "local", "copy", {}, work))
    assert done.state == TaskState.COMPLETED and done.result is None
    with pytest.raises(Conflict, match="already ended"):
        await service.cancel(ALICE, done.id)
    with pytest.raises(NotFound):
        await service.cancel(BOB, done.id)


async def test_an_unexpected_error_fails_the_task_without_its_text(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    service = TaskService(TaskStore(database))

    async def work(progress: Progress) -> dict[str, Any]:
        raise ValueError("secret internals")

    done = await ended(service, await service.start(ALICE, "local", "copy", {}, work))
    assert done.state == TaskState.FAILED and done.error is not None
    assert done.error["status"] == 500 and done.error["type"] == PROBLEM_BASE + "internal"
    assert "secret" not in str(done.error)
    assert "secret internals" in caplog.text  # the operator sees it in the log


async def test_failed_tasks_carry_the_apis_problem_shape(database: Database) -> None:
    service = TaskService(TaskStore(database))

    async def work(progress: Progress) -> dict[str, Any]:
        raise Conflict("target exists")

    done = await ended(service, await service.start(ALICE, "local", "copy", {}, work))
    assert done.error == {
        "type": PROBLEM_BASE + "conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "target exists",
    }


async def test_cancel_needs_the_files_write_scope(database: Database) -> None:
    service = TaskService(TaskStore(database))
    reader = Principal("alice", frozenset({Scope.FILES_READ}), "t3")

    async def forever(progress: Progress) -> dict[str, Any]:
        await asyncio.Event().wait()
        return {}

    started = await service.start(ALICE, "local", "copy", {}, forever)
    assert (await service.get(reader, started.id)).state == TaskState.RUNNING
    with pytest.raises(Forbidden):
        await service.cancel(reader, started.id)
    assert (await service.cancel(ALICE, started.id)).state == TaskState.CANCELLED


async def test_stop_records_work_that_ignores_the_cancel_or_never_began(
    database: Database,
) -> None:
    service = TaskService(TaskStore(database), cancel_wait=0.05)
    release = asyncio.Event()

    async def stubborn(progress: Progress) -> dict[str, Any]:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.Event().wait()
        await release.wait()
        return {}

    ignoring = await service.start(ALICE, "local", "copy", {}, stubborn)
    await asyncio.sleep(0.01)
    unstarted = await service.start(ALICE, "local", "copy", {}, stubborn)
    await service.stop()  # the second one's work has not taken a step yet
    for task in (ignoring, unstarted):
        seen = await service.get(ALICE, task.id)
        assert seen.state == TaskState.FAILED and seen.error is not None
        assert seen.error["type"] == PROBLEM_BASE + "interrupted"
        assert seen.error["detail"] == INTERRUPTED
    release.set()
    await asyncio.sleep(0.05)  # the stubborn work ends; nothing is left running
