"""Functions: the ones the caller may invoke, then those of each of its projects
(``PROJECT~NAME``; a viewer sees them but gets no form), a form generated from each one's
input schema, an invocation's output streamed as it arrives (Server-Sent Events from its
worker, as ``/api/v1/functions`` streams them) and its result or error, past invocations."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from hpcgate.functions.invocations import Batch, payload
from hpcgate.model.bounds import KEY_MAX
from hpcgate.model.errors import HpcgateError, Invalid
from hpcgate.model.functions import Function
from hpcgate.model.services import qualified_name
from hpcgate.webui import schemaform
from hpcgate.webui.forms import read_form
from hpcgate.webui.projectlists import Section, may_use, sections
from hpcgate.webui.render import page
from hpcgate.webui.viewer import Viewer, ViewerDep

router = APIRouter(prefix="/functions")
FunctionName = Annotated[
    str,
    Path(
        pattern=r"^([A-Za-z0-9_][A-Za-z0-9_.-]{0,63}:|[a-z][a-z0-9_-]{0,62}~)?[a-z][a-z0-9_-]{0,39}$"
    ),
]
Key = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
#: An invocation started here runs on while some page reads its events, and is cancelled
#: once none has for this long (the API's ``detach=N``): leaving its page does not lose it.
GRACE_SECONDS = 60
PAST = 20
PING_SECONDS = 15


def _ref(function: Function, viewer: Viewer) -> str:
    """How the caller names the function: its own by name, another user's OWNER:NAME, a
    project's PROJECT~NAME."""
    if function.project is not None:
        return qualified_name(function.project, function.name)
    if function.owner == viewer.who.user:
        return function.name
    return f"{function.owner}:{function.name}"


@router.get("")
async def list_functions(request: Request, viewer: ViewerDep) -> Response:
    registry = viewer.gateway.functions
    refs = [(_ref(f, viewer), f) for f in await registry.list(viewer.who)]
    projects = [
        Section(found.project, found.role, [(_ref(f, viewer), f) for f in found.items])
        for found in await sections(viewer, registry.list)
    ]
    return page(request, "functions.html", viewer.session, functions=refs, projects=projects)


async def _invokes(viewer: Viewer, function: Function) -> bool:
    """Whether the page offers the form: a project's function to a member or an owner (as
    the registry reads the role, and checks it again when invoked)."""
    if function.project is None:
        return True
    registry = viewer.gateway.functions
    return may_use(await registry.project_role(viewer.who, function.project, function.name))


async def _function(viewer: Viewer, name: str) -> Function:
    functions = viewer.gateway.functions
    return await functions.show(viewer.who, await functions.find(viewer.who, name))


@router.get("/{name}")
async def function_page(request: Request, viewer: ViewerDep, name: FunctionName) -> Response:
    return await _page(request, viewer, name, None, [])


async def _page(
    request: Request,
    viewer: Viewer,
    name: str,
    form_values: dict[str, str] | None,
    errors: list[str],
    status: int = 200,
) -> Response:
    function = await _function(viewer, name)
    schema = function.input_schema
    fields = schemaform.fields(schema)
    values = form_values or {f.key: f.default for f in fields}
    if not fields and form_values is None:
        values[schemaform.WHOLE] = schemaform.whole_default(schema)
    past = await viewer.gateway.invocations.list(viewer.who, name, PAST)
    return page(
        request,
        "function.html",
        viewer.session,
        status_code=status,
        ref=name,
        function=function,
        fields=fields,
        whole=schemaform.WHOLE,
        values=values,
        errors=errors,
        past=past,
        invokes=await _invokes(viewer, function),
    )


@router.post("/{name}/invoke")
async def invoke(request: Request, viewer: ViewerDep, name: FunctionName) -> Response:
    """Invoked as POST /api/v1/functions/{name}/invoke?detach=60 would be, then to its
    page, which follows its events (a project's viewer: refused there, 403)."""
    function = await _function(viewer, name)
    form = await read_form(request)
    shown = {key: form.get(key) for key in _keys(function.input_schema)}
    try:
        value = schemaform.value(function.input_schema, form)
        call = await viewer.gateway.invocations.invoke(viewer.who, name, value, GRACE_SECONDS)
    except schemaform.FormError as exc:
        return await _page(request, viewer, name, shown, [str(exc)], status=422)
    except HpcgateError as exc:
        return await _page(request, viewer, name, shown, _reasons(exc), status=exc.status)
    return RedirectResponse(f"/ui/functions/{name}/invocations/{call.id}", status_code=303)


def _keys(schema: dict[str, Any]) -> list[str]:
    return [f.key for f in schemaform.fields(schema)] or [schemaform.WHOLE]


def _reasons(exc: HpcgateError) -> list[str]:
    """The error, and each place the input did not match the schema."""
    errors = exc.extra.get("errors") if isinstance(exc, Invalid) else None
    listed = errors if isinstance(errors, list) else []
    where = [
        f"{'.'.join(map(str, e.get('loc', [])))}: {e.get('msg', '')}"
        for e in listed
        if isinstance(e, dict)
    ]
    return [exc.detail, *where]


@router.get("/{name}/invocations/{key}")
async def invocation_page(
    request: Request, viewer: ViewerDep, name: FunctionName, key: Key
) -> Response:
    invocation = await viewer.gateway.invocations.get(viewer.who, name, key)
    return page(request, "invocation.html", viewer.session, ref=name, invocation=invocation)


@router.post("/{name}/invocations/{key}/cancel")
async def cancel(request: Request, viewer: ViewerDep, name: FunctionName, key: Key) -> Response:
    await viewer.gateway.invocations.cancel(viewer.who, name, key)
    return RedirectResponse(f"/ui/functions/{name}/invocations/{key}", status_code=303)


def _resumed(request: Request) -> int:
    value = request.headers.get("last-event-id", "")
    return int(value) if value.isdigit() and int(value) <= KEY_MAX else 0


@router.get("/{name}/invocations/{key}/events")
async def events(
    request: Request, viewer: ViewerDep, name: FunctionName, key: Key
) -> EventSourceResponse:
    """Its events after the last one the page had: 'output' (one per yield), then
    'result' or 'error', each one line of JSON (as the API's stream)."""
    after = _resumed(request)
    invocations = viewer.gateway.invocations
    call = await invocations.resume(viewer.who, name, key, after)
    batches = invocations.replay(call, after)
    first = await anext(batches, None)  # events no longer kept: an error page (410), which
    # ends the page's EventSource, not a broken stream it would reconnect to for ever
    return EventSourceResponse(_frames(first, batches), ping=PING_SECONDS)


async def _frames(
    first: Batch | None, rest: AsyncIterator[Batch]
) -> AsyncIterator[ServerSentEvent]:
    if first is None:
        return
    async for batch in _then(first, rest):
        for event in batch:
            data = payload(event) if event["type"] == "output" else event.get("data")
            kind = str(event["type"])
            yield ServerSentEvent(json.dumps(data), event=kind, id=str(int(event["seq"])))


async def _then(first: Batch, rest: AsyncIterator[Batch]) -> AsyncIterator[Batch]:
    yield first
    async for batch in rest:
        yield batch
