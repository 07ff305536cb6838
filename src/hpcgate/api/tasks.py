"""``/api/v1/tasks``: long operations started by other routes (file copies, archives...)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from hpcgate.api.auth import Caller, GatewayDep
from hpcgate.api.problems import responses
from hpcgate.model.tasks import Task

router = APIRouter(prefix="/api/v1/tasks", tags=["tasks"])

TaskId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="The task's id")]


@router.get("", summary="My tasks, newest first", responses=responses(401, 403, 422))
async def list_tasks(
    who: Caller, gateway: GatewayDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> list[Task]:
    """Every task the caller started, running or ended, newest first."""
    return await gateway.tasks.list(who, limit)


@router.get("/{task_id}", summary="One task", responses=responses(401, 403, 404, 422))
async def get_task(task_id: TaskId, who: Caller, gateway: GatewayDep) -> Task:
    """Poll until ``state`` is no longer ``running``: then ``result`` or ``error`` is set."""
    return await gateway.tasks.get(who, task_id)


@router.delete("/{task_id}", summary="Cancel a task", responses=responses(401, 403, 404, 409, 422))
async def cancel_task(task_id: TaskId, who: Caller, gateway: GatewayDep) -> Task:
    """Stops the work (a program it runs is killed) and returns the task, ``cancelled``.
    A task that has already ended is a 409. Work that takes more than 10 s to stop is
    returned still ``running``: poll it. Needs the ``files:write`` scope."""
    return await gateway.tasks.cancel(who, task_id)
