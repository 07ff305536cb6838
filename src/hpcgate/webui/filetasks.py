"""File tools: one entry's page (its sha256 on request; copy or move it to a path the user
types; archive a directory; extract an archive into a new directory), each long operation a
task of the API's (``files/cp``, ``mv``, ``compress``, ``extract``) whose page shows its
progress live (htmx polls it every second) until it ends, with the failure's message.

Replacing an existing target (``overwrite``) asks for a confirmation first."""

from __future__ import annotations

import posixpath
from typing import Annotated, Any, Literal
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from hpcgate.model.errors import Invalid
from hpcgate.model.files import SUFFIXES, Compress, Extract, Transfer
from hpcgate.model.principal import Scope
from hpcgate.model.tasks import Task, TaskState
from hpcgate.webui.forms import Form, read_form
from hpcgate.webui.render import page
from hpcgate.webui.viewer import Viewer, ViewerDep

router = APIRouter(prefix="/files")
SystemName = Annotated[str, Path(max_length=64)]
FilePath = Annotated[str, Query(min_length=1, max_length=4096)]
TaskId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
Operation = Literal["copy", "move", "compress", "extract"]
OPERATIONS: tuple[Operation, ...] = ("copy", "move", "compress", "extract")
STOP_POLLING = 286  # htmx swaps this answer in and polls no more


def is_archive(name: str) -> bool:
    return name.endswith((*SUFFIXES, ".tar"))


def archive_stem(name: str) -> str:
    """``run.tar.gz`` as ``run`` (the directory an archive is extracted into by default)."""
    for suffix in sorted((*SUFFIXES, ".tar"), key=len, reverse=True):
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return f"{name}.d"


@router.get("/{system}/tools")
async def tools(
    request: Request,
    viewer: ViewerDep,
    system: SystemName,
    path: FilePath,
    sum: Literal["sha256"] | None = None,
) -> Response:
    """The entry's page; with ``sum=sha256`` (a file) its digest computed and shown."""
    target = viewer.target(system)
    entry = await viewer.gateway.files.stat(target, path, False, False)
    digest = None
    if sum is not None and entry.type == "file":
        digest = (await viewer.gateway.files.checksum(target, entry.path, sum)).checksum
    return page(
        request,
        "file_tools.html",
        viewer.session,
        system=system,
        entry=entry,
        digest=digest,
        parent=posixpath.dirname(entry.path.rstrip("/")) or "/",
        archive=entry.type == "file" and is_archive(entry.name),
        stem=archive_stem(entry.name),
        can_write=viewer.who.has(Scope.FILES_WRITE),
    )


def _request(operation: Operation, form: Form) -> Transfer | Compress | Extract:
    fields = {"source": form.get("path"), "target": form.get("target").strip()}
    overwrite = form.get("overwrite") == "yes"
    try:
        if operation == "extract":
            return Extract.model_validate(fields)
        if operation == "compress":
            return Compress.model_validate({**fields, "overwrite": overwrite})
        return Transfer.model_validate({**fields, "overwrite": overwrite})
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise Invalid(problems) from None


async def _start(
    viewer: Viewer, system: str, operation: Operation, asked: Transfer | Compress | Extract
) -> Task:
    target, bulk = viewer.target(system), viewer.gateway.bulk
    if operation == "copy" and isinstance(asked, Transfer):
        return await bulk.copy(target, asked)
    if operation == "move" and isinstance(asked, Transfer):
        return await bulk.move(target, asked)
    if isinstance(asked, Compress):
        return await bulk.compress(target, asked)
    assert isinstance(asked, Extract)
    return await bulk.extract(target, asked)


@router.post("/{system}/task")
async def start(request: Request, viewer: ViewerDep, system: SystemName) -> Response:
    """Starts the form's operation as a task and shows its page; one that would replace a
    target asks first (the same form again, ``confirmed``)."""
    form = await read_form(request)
    operation = form.get("operation")
    if operation not in OPERATIONS:
        raise Invalid(f"the operation is one of {', '.join(OPERATIONS)}")
    asked = _request(operation, form)
    replaces = getattr(asked, "overwrite", False)
    if replaces and form.get("confirmed") != "yes":
        return page(
            request,
            "file_task_confirm.html",
            viewer.session,
            system=system,
            operation=operation,
            asked=asked,
        )
    task = await _start(viewer, system, operation, asked)
    return RedirectResponse(f"/ui/files/{quote(system)}/tasks/{task.id}", status_code=303)


def _shown(task: Task) -> dict[str, Any]:
    progress = task.progress
    percent = None
    if progress.total:
        percent = min(100, round(100 * progress.done / progress.total))
    error = task.error or {}
    return {
        "task": task,
        "percent": percent,
        "running": task.state is TaskState.RUNNING,
        "failure": error.get("detail") or error.get("title"),
        "source": str(task.request.get("source", "")),
        "target": str(task.request.get("target", "")),
    }


@router.get("/{system}/tasks/{task_id}")
async def task_page(
    request: Request, viewer: ViewerDep, system: SystemName, task_id: TaskId
) -> Response:
    """A task of the viewer's (another's: 404), its state polled while it runs."""
    task = await viewer.gateway.tasks.get(viewer.who, task_id)
    return page(request, "file_task.html", viewer.session, system=system, **_shown(task))


@router.get("/{system}/tasks/{task_id}/state")
async def task_state(
    request: Request, viewer: ViewerDep, system: SystemName, task_id: TaskId
) -> Response:
    """The task's state for htmx; once it has ended, answered so that polling stops."""
    task = await viewer.gateway.tasks.get(viewer.who, task_id)
    shown = _shown(task)
    status = 200 if shown["running"] else STOP_POLLING
    return page(
        request, "file_task_state.html", viewer.session, status_code=status, system=system, **shown
    )
