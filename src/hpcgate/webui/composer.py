"""Jobs from something kept: the admin's templates (``[[ui.job_templates]]``, a form made
of their parameters) and the user's own saved scripts.

Saved scripts are files in the user's home on each system, ``~/.hpcgate/scripts/NAME.sh``,
read and written through the files service as any file of theirs: they are the user's
own (editable on the cluster, kept with their other files, under the same permissions and
roots), need no table of the gateway's, and a script saved on a system is there for the
jobs of that system.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Path, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from hpcgate.jobtemplates import JobTemplate
from hpcgate.model.errors import HpcgateError, Invalid, NotFound
from hpcgate.model.jobs import JobSpec
from hpcgate.webui.forms import read_form
from hpcgate.webui.render import page
from hpcgate.webui.viewer import Viewer, ViewerDep

router = APIRouter()
SCRIPTS_DIR = ".hpcgate/scripts"
SUFFIX = ".sh"
SCRIPT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SCRIPT_MAX = 1 << 20
SAVED_MAX = 200
#: A parameter's field on the form: prefixed, so no parameter's name is another field's.
FIELD_PREFIX = "p_"
TemplateName = Annotated[str, Path(pattern=r"^[a-z][a-z0-9-]{0,39}$")]


def templates(viewer: Viewer) -> list[JobTemplate]:
    return viewer.gateway.settings.ui.job_templates


def _template(viewer: Viewer, name: str) -> JobTemplate:
    for template in templates(viewer):
        if template.name == name:
            return template
    raise NotFound(f"no job template {name!r}")


def script_name(value: str) -> str:
    if not SCRIPT_NAME.fullmatch(value):
        raise Invalid("a script's name: letters, digits, '.', '_', '-' (at most 64)")
    return value.removesuffix(SUFFIX)


async def _directory(viewer: Viewer, system: str) -> str:
    roots = await viewer.gateway.files.roots(viewer.target(system))
    return posixpath.join(roots.home, SCRIPTS_DIR)


async def saved_scripts(viewer: Viewer, system: str) -> list[str]:
    """The names of the user's saved scripts on ``system`` (none yet, or none readable:
    empty; the form works without them)."""
    try:
        directory = await _directory(viewer, system)
        listing = await viewer.gateway.files.listing(
            viewer.target(system), directory, False, 1, False
        )
    except HpcgateError:
        return []
    names = [e.name for e in listing.entries if e.type == "file" and e.name.endswith(SUFFIX)]
    return sorted(name.removesuffix(SUFFIX) for name in names)[:SAVED_MAX]


async def read_saved(viewer: Viewer, system: str, name: str) -> str:
    path = posixpath.join(await _directory(viewer, system), script_name(name) + SUFFIX)
    target = viewer.target(system)
    entry = await viewer.gateway.files.stat(target, path, True, True)
    if entry.type != "file" or entry.size > SCRIPT_MAX:
        raise Invalid(f"a saved script is a file of at most {SCRIPT_MAX >> 10} KiB")
    return (await viewer.gateway.files.view(target, path, 0, entry.size)).content


async def save(viewer: Viewer, system: str, name: str, script: str) -> None:
    """``script`` as the saved script ``name`` on ``system`` (replacing one of that name)."""
    directory = await _directory(viewer, system)
    target = viewer.target(system)
    await viewer.gateway.files.mkdir(target, directory, True)
    data = script.encode()

    async def body() -> AsyncIterator[bytes]:
        yield data

    path = posixpath.join(directory, script_name(name) + SUFFIX)
    await viewer.gateway.files.upload(target, path, body(), True, None)


def _systems(viewer: Viewer) -> list[str]:
    return [cluster.name for cluster in viewer.gateway.systems]


@router.get("/templates/{name}")
async def template_form(request: Request, viewer: ViewerDep, name: TemplateName) -> Response:
    template = _template(viewer, name)
    values = {FIELD_PREFIX + p.name: p.default for p in template.parameters}
    return _form(request, viewer, template, values, [])


def _form(
    request: Request,
    viewer: Viewer,
    template: JobTemplate,
    values: dict[str, str],
    errors: list[str],
    status: int = 200,
) -> Response:
    return page(
        request,
        "job_template.html",
        viewer.session,
        status_code=status,
        job_template=template,
        values=values,
        errors=errors,
        systems=_systems(viewer),
    )


@router.post("/templates/{name}")
async def submit_template(request: Request, viewer: ViewerDep, name: TemplateName) -> Response:
    """The template's job with the form's values (each checked: 422 and the form again)."""
    template = _template(viewer, name)
    form = await read_form(request)
    given = {p.name: form.get(FIELD_PREFIX + p.name) for p in template.parameters}
    values = {"system": form.get("system"), "job_name": form.get("job_name")}
    values |= {FIELD_PREFIX + name: value for name, value in given.items()}
    systems = _systems(viewer)
    system = values["system"] if values["system"] in systems else systems[0]
    try:
        script, environment = template.render(given)
        fields = {"script": script, "environment": environment}
        spec = JobSpec.model_validate(fields | {"name": form.given("job_name") or template.name})
    except (ValueError, ValidationError) as exc:
        return _form(request, viewer, template, values, [str(exc)], status=422)
    try:
        submitted = await viewer.gateway.jobs.submit(viewer.target(system), spec)
    except HpcgateError as exc:
        return _form(request, viewer, template, values, [exc.detail], status=exc.status)
    return RedirectResponse(f"/ui/jobs/{system}/{submitted.job.id}", status_code=303)
