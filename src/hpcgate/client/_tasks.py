"""The SDK's tasks methods: the long operations other calls start (file copies, archives),
polled until they end."""

from __future__ import annotations

import asyncio
import time

from hpcgate.client._async import AsyncCore
from hpcgate.client._base import Call, Waiting, request
from hpcgate.client._errors import from_problem
from hpcgate.client._sync import SyncCore
from hpcgate.model.tasks import Task, TaskState


def task_call(method: str, task_id: str) -> Call:
    return request(method, "tasks", task_id)


def tasks_call(limit: int) -> Call:
    return request("GET", "tasks", params={"limit": limit})


def task_ended(task: Task, check: bool) -> Task:
    """``task``, which has ended; with ``check``, a failed task's error is raised as the
    exception the gateway raised (a cancelled task is returned: someone meant it)."""
    if check and task.state is TaskState.FAILED:
        error = task.error or {}
        status = error.get("status")
        raise from_problem(status if isinstance(status, int) else 500, error)
    return task


class SyncTasks(SyncCore):
    """Tasks methods of :class:`~hpcgate.Client`."""

    def task(self, task_id: str) -> Task:
        """The task as it is now: ``progress`` while running, then ``result`` or ``error``."""
        return self._call(task_call("GET", task_id), Task)

    def tasks(self, *, limit: int = 100) -> list[Task]:
        """The caller's tasks, running or ended, newest first."""
        return self._call(tasks_call(limit), list[Task])

    def cancel_task(self, task_id: str) -> Task:
        """Stop the task (a program it runs is killed); it comes back ``cancelled``, or
        still ``running`` if its work takes long to stop. An ended task is a Conflict."""
        return self._call(task_call("DELETE", task_id), Task)

    def wait_task(self, task_id: str, *, timeout: float | None = None, check: bool = False) -> Task:
        """The task once it has ended, polled with a growing pause (0.5 s to 10 s).
        :class:`WaitTimeout` after ``timeout`` seconds; with ``check``, a failed task's
        error raised as its own exception class (e.g. NotFound, Conflict)."""
        waiting = Waiting(timeout)
        while True:
            task = self.task(task_id)
            if task.state is not TaskState.RUNNING:
                return task_ended(task, check)
            time.sleep(waiting.pause(f"task {task_id} is still running"))


class AsyncTasks(AsyncCore):
    """Tasks methods of :class:`~hpcgate.AsyncClient`."""

    async def task(self, task_id: str) -> Task:
        """As :meth:`Client.task`."""
        return await self._call(task_call("GET", task_id), Task)

    async def tasks(self, *, limit: int = 100) -> list[Task]:
        """As :meth:`Client.tasks`."""
        return await self._call(tasks_call(limit), list[Task])

    async def cancel_task(self, task_id: str) -> Task:
        """As :meth:`Client.cancel_task`."""
        return await self._call(task_call("DELETE", task_id), Task)

    async def wait_task(
        self, task_id: str, *, timeout: float | None = None, check: bool = False
    ) -> Task:
        """As :meth:`Client.wait_task`."""
        waiting = Waiting(timeout)
        while True:
            task = await self.task(task_id)
            if task.state is not TaskState.RUNNING:
                return task_ended(task, check)
            await asyncio.sleep(waiting.pause(f"task {task_id} is still running"))
