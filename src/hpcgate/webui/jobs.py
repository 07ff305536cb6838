"""Jobs: the list with filters, the submit form (offering the templates and the saved
scripts of webui/composer.py, and saving its script under a name), a job's page with its
state changes and its output live (Server-Sent Events from the same follow as the API's),
cancel, resubmit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sse_starlette import EventSourceResponse, ServerSentEvent

from hpcgate.jobs.output import JobOutput, Stream
from hpcgate.model.bounds import KEY_MAX
from hpcgate.model.errors import HpcgateError, Invalid
from hpcgate.model.jobs import JobSpec, JobState
from hpcgate.webui.composer import read_saved, save, saved_scripts, templates
from hpcgate.webui.forms import Form, read_form
from hpcgate.webui.render import page
from hpcgate.webui.viewer import Viewer, ViewerDep

router = APIRouter(prefix="/jobs")
JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.+-]{1,64}$")]
SystemName = Annotated[str, Path(max_length=64)]
PING_SECONDS = 15
PAGE = 50
#: The submit form's fields that are copied into the spec as they are (when given).
TEXT_FIELDS = ("name", "partition", "account", "working_directory", "time_limit", "memory")
NUMBER_FIELDS = ("nodes", "ntasks", "cpus_per_task")
DEFAULT_SCRIPT = "#!/bin/bash\necho hello from $(hostname)\n"


def _systems(viewer: Viewer) -> list[str]:
    return [cluster.name for cluster in viewer.gateway.systems]


def _system_or_first(viewer: Viewer, system: str | None) -> str:
    names = _systems(viewer)
    return system if system in names else names[0]


@router.get("")
async def list_jobs(
    request: Request,
    viewer: ViewerDep,
    system: Annotated[str | None, Query(max_length=64)] = None,
    state: Annotated[str | None, Query(max_length=32, description="Empty: any")] = None,
    name: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The whole page, or (for htmx) only its rows when a filter changes."""
    chosen = _system_or_first(viewer, system)
    wanted = _state(state)
    states = [wanted] if wanted else []
    listed = await viewer.gateway.jobs.list(viewer.target(chosen), states, name or None, None, PAGE)
    rows_only = request.headers.get("hx-target") == "job-rows"  # not a history restore
    template = "job_rows.html" if rows_only else "jobs.html"
    return page(
        request,
        template,
        viewer.session,
        jobs=listed.items,
        system=chosen,
        systems=_systems(viewer),
        states=list(JobState),
        state=wanted,
        name=name,
    )


def _state(value: str | None) -> JobState | None:
    """The state filter's choice; the empty one ("Any") is none."""
    if not value:
        return None
    try:
        return JobState(value)
    except ValueError:
        raise Invalid(f"no job state {value!r}") from None


@router.get("/new")
async def new_job(
    request: Request,
    viewer: ViewerDep,
    system: Annotated[str | None, Query(max_length=64)] = None,
    saved: Annotated[str | None, Query(max_length=64, description="A saved script")] = None,
) -> Response:
    """The form: empty, or holding one of the user's saved scripts."""
    chosen = _system_or_first(viewer, system)
    script = await read_saved(viewer, chosen, saved) if saved else DEFAULT_SCRIPT
    values = {"script": script, "system": chosen, "save_as": saved or ""}
    return await _form(request, viewer, values, [])


async def _form(
    request: Request, viewer: Viewer, values: dict[str, str], errors: list[str], status: int = 200
) -> Response:
    system = _system_or_first(viewer, values.get("system"))
    return page(
        request,
        "job_new.html",
        viewer.session,
        status_code=status,
        values=values,
        errors=errors,
        systems=_systems(viewer),
        templates=templates(viewer),
        saved=await saved_scripts(viewer, system),
        system=system,
    )


def _spec(form: Form) -> JobSpec:
    """The spec the form describes; an empty field is a field not given."""
    fields: dict[str, object] = {"script": form.get("script").replace("\r\n", "\n")}
    for key in TEXT_FIELDS:
        if (value := form.given(key)) is not None:
            fields[key] = value
    for key in NUMBER_FIELDS:
        if (value := form.given(key)) is not None:
            fields[key] = value
    return JobSpec.model_validate(fields)


@router.post("")
async def submit(request: Request, viewer: ViewerDep) -> Response:
    form = await read_form(request)
    fields = ("system", "script", "save_as", *TEXT_FIELDS, *NUMBER_FIELDS)
    values = {key: form.get(key) for key in fields}
    try:
        spec = _spec(form)
    except ValidationError as exc:
        errors = [f"{'.'.join(map(str, e['loc'])) or 'form'}: {e['msg']}" for e in exc.errors()]
        return await _form(request, viewer, values, errors, status=422)
    system = _system_or_first(viewer, form.get("system"))
    try:
        if save_as := form.given("save_as"):  # kept first: a refused submit still saved it
            await save(viewer, system, save_as, spec.script or "")
        submitted = await viewer.gateway.jobs.submit(viewer.target(system), spec)
    except HpcgateError as exc:
        return await _form(request, viewer, values, [exc.detail], status=exc.status)
    return RedirectResponse(f"/ui/jobs/{system}/{submitted.job.id}", status_code=303)


@router.get("/{system}/{job_id}")
async def job_page(
    request: Request, viewer: ViewerDep, system: SystemName, job_id: JobId
) -> Response:
    job = await viewer.gateway.jobs.get(viewer.target(system), job_id)
    return page(request, "job.html", viewer.session, job=job)


@router.post("/{system}/{job_id}/cancel")
async def cancel(
    request: Request, viewer: ViewerDep, system: SystemName, job_id: JobId
) -> Response:
    await viewer.gateway.jobs.cancel(viewer.target(system), job_id)
    return RedirectResponse(f"/ui/jobs/{system}/{job_id}", status_code=303)


@router.post("/{system}/{job_id}/resubmit")
async def resubmit(
    request: Request, viewer: ViewerDep, system: SystemName, job_id: JobId
) -> Response:
    """The same spec again, as a new job."""
    target = viewer.target(system)
    spec = await viewer.gateway.jobs.spec(target, job_id)
    submitted = await viewer.gateway.jobs.submit(target, spec)
    return RedirectResponse(f"/ui/jobs/{system}/{submitted.job.id}", status_code=303)


def _resumed(request: Request) -> int:
    """Where a reconnecting EventSource left off (its ``Last-Event-ID``), else 0."""
    value = request.headers.get("last-event-id", "")
    return int(value) if value.isdigit() and int(value) <= KEY_MAX else 0


@router.get("/{system}/{job_id}/output")
async def output(
    request: Request,
    viewer: ViewerDep,
    system: SystemName,
    job_id: JobId,
    stream: Stream = Stream.STDOUT,
) -> EventSourceResponse:
    """The job's output as it is written: 'output' events {text, offset}, then 'end' with
    the job as it ended (the API's follow, for a browser's EventSource)."""
    followed = await viewer.gateway.jobs.output(viewer.target(system), job_id, stream)
    return EventSourceResponse(_output_events(followed, _resumed(request)), ping=PING_SECONDS)


async def _output_events(output: JobOutput, offset: int) -> AsyncIterator[ServerSentEvent]:
    async for chunk in output.follow(offset):
        data = json.dumps({"text": chunk.text, "offset": chunk.offset})
        yield ServerSentEvent(data, event="output", id=str(chunk.offset))
    yield ServerSentEvent(output.job.model_dump_json(), event="end")


@router.get("/{system}/{job_id}/events")
async def events(
    request: Request, viewer: ViewerDep, system: SystemName, job_id: JobId
) -> EventSourceResponse:
    """The job's state changes: 'state' events until it ends, then 'end'."""
    changes = await viewer.gateway.jobs.events(viewer.target(system), job_id)

    async def frames() -> AsyncIterator[ServerSentEvent]:
        async for event in changes.after(_resumed(request)):
            yield ServerSentEvent(event.model_dump_json(), event="state", id=str(event.id))
        yield ServerSentEvent("{}", event="end")

    return EventSourceResponse(frames(), ping=PING_SECONDS)
