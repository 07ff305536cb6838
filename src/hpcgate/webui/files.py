"""Files: browse the roots with breadcrumbs, upload (drag and drop, with progress, from
``static/app.js``), download, make a directory, rename, delete after a confirmation, and
edit a small text file."""

from __future__ import annotations

import posixpath
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from hpcgate.files.streams import read_out
from hpcgate.model.errors import Invalid, NotFound
from hpcgate.model.files import Listing, Transfer
from hpcgate.model.principal import Scope
from hpcgate.model.tasks import TaskState
from hpcgate.webui.forms import read_form
from hpcgate.webui.render import page
from hpcgate.webui.viewer import Viewer, ViewerDep

router = APIRouter(prefix="/files")
SystemName = Annotated[str, Path(max_length=64)]
FilePath = Annotated[str, Query(min_length=1, max_length=4096)]
MaybePath = Annotated[str | None, Query(min_length=1, max_length=4096)]
#: The editor opens files up to this size.
EDIT_MAX = 1 << 20
RENAME_WAIT_SECONDS = 10


@dataclass(frozen=True)
class Crumb:
    name: str
    path: str
    linked: bool  # inside the roots: a link; above them, only a name


def within(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def breadcrumbs(path: str, roots: Sequence[str]) -> list[Crumb]:
    """``/a/b/c`` as ``/``, ``/a``, ``/a/b`` and ``/a/b/c``; links for those in the roots."""
    crumbs = [Crumb("/", "/", within("/", roots))]
    parts = [part for part in path.split("/") if part]
    for index, part in enumerate(parts):
        ancestor = "/" + "/".join(parts[: index + 1])
        crumbs.append(Crumb(part, ancestor, within(ancestor, roots)))
    return crumbs


def _listing_url(system: str, path: str) -> str:
    return f"/ui/files/{quote(system)}?path={quote(path)}"


def entry_name(value: str) -> str:
    """One name in a directory: no separator, not '.' or '..'."""
    name = value.strip()
    if not name or "/" in name or name in (".", "..") or "\x00" in name or len(name) > 255:
        raise Invalid("give a name without '/' (not '.' or '..'), at most 255 characters")
    return name


@router.get("/{system}")
async def browse(
    request: Request, viewer: ViewerDep, system: SystemName, path: MaybePath = None
) -> Response:
    target = viewer.target(system)
    files = viewer.gateway.files
    roots = await files.roots(target)
    try:
        listing = await files.listing(target, path or roots.home, False, 1, False)
    except NotFound:
        if path is not None:
            raise
        listing = Listing(path=roots.home, entries=[])  # a new user's: made by a first job
    entries = sorted(listing.entries, key=lambda e: (e.type != "directory", e.name))
    parent = posixpath.dirname(listing.path.rstrip("/")) or "/"
    return page(
        request,
        "files.html",
        viewer.session,
        system=system,
        systems=[cluster.name for cluster in viewer.gateway.systems],
        listing=listing,
        entries=entries,
        roots=roots.shown,
        crumbs=breadcrumbs(listing.path, roots.shown),
        parent=parent if within(parent, roots.shown) else None,
        can_write=viewer.who.has(Scope.FILES_WRITE),
    )


@router.get("/{system}/download")
async def download(viewer: ViewerDep, system: SystemName, path: FilePath) -> Response:
    opened = await viewer.gateway.files.open(viewer.target(system), path)
    name = quote(posixpath.basename(path), safe="")
    headers = {
        "Content-Disposition": f"attachment; filename*=UTF-8''{name}",
        "Content-Length": str(opened.info.size),
    }
    return StreamingResponse(
        read_out(opened.file, 0, opened.info.size),
        headers=headers,
        media_type="application/octet-stream",
    )


@router.put("/upload")
async def upload(
    request: Request,
    viewer: ViewerDep,
    system: Annotated[str, Query(max_length=64)],
    path: FilePath,
    overwrite: bool = False,
) -> Response:
    """The body is the file's bytes (sent by app.js with the CSRF header): as the API's
    upload, into a hidden file first, named only once all of it is there. Its path ends in
    ``/files/upload``, as the API's, so the request body cap leaves it to stream whatever
    its size (:func:`hpcgate.api.limits.streamed`)."""
    body = request.stream()
    uploaded = await viewer.gateway.files.upload(viewer.target(system), path, body, overwrite, None)
    return JSONResponse({"path": uploaded.entry.path, "sha256": uploaded.sha256}, status_code=201)


@router.post("/{system}/mkdir")
async def mkdir(request: Request, viewer: ViewerDep, system: SystemName) -> Response:
    form = await read_form(request)
    where = form.get("path")
    made = posixpath.join(where, entry_name(form.get("name")))
    await viewer.gateway.files.mkdir(viewer.target(system), made, False)
    return RedirectResponse(_listing_url(system, where), status_code=303)


@router.post("/{system}/rename")
async def rename(request: Request, viewer: ViewerDep, system: SystemName) -> Response:
    """A move within the same directory: a task (as the API's mv), which the listing waits
    for a few seconds, so that it shows the new name (a longer one goes on meanwhile)."""
    form = await read_form(request)
    source = form.get("path")
    where = posixpath.dirname(source)
    moved = Transfer(source=source, target=posixpath.join(where, entry_name(form.get("name"))))
    task = await viewer.gateway.bulk.move(viewer.target(system), moved)
    with anyio.move_on_after(RENAME_WAIT_SECONDS):
        while task.state is TaskState.RUNNING:
            await anyio.sleep(0.05)
            task = await viewer.gateway.tasks.get(viewer.who, task.id)
    if task.state is TaskState.FAILED and task.error is not None:
        raise Invalid(f"the rename failed: {task.error.get('detail') or task.error['title']}")
    return RedirectResponse(_listing_url(system, where), status_code=303)


@router.get("/{system}/delete")
async def confirm_delete(
    request: Request, viewer: ViewerDep, system: SystemName, path: FilePath
) -> Response:
    entry = await viewer.gateway.files.stat(viewer.target(system), path, False, False)
    return page(request, "file_delete.html", viewer.session, system=system, entry=entry)


@router.post("/{system}/delete")
async def delete(request: Request, viewer: ViewerDep, system: SystemName) -> Response:
    form = await read_form(request)
    path = form.get("path")
    recursive = form.get("recursive") == "yes"
    await viewer.gateway.files.remove(viewer.target(system), path, recursive)
    return RedirectResponse(_listing_url(system, posixpath.dirname(path)), status_code=303)


async def _editable(viewer: Viewer, system: str, path: str) -> str:
    target = viewer.target(system)
    entry = await viewer.gateway.files.stat(target, path, True, True)
    if entry.type != "file" or entry.size > EDIT_MAX:
        raise Invalid(f"the editor opens regular files up to {EDIT_MAX >> 10} KiB")
    if entry.size == 0:
        return ""
    return (await viewer.gateway.files.view(target, path, 0, entry.size)).content


@router.get("/{system}/edit")
async def edit(request: Request, viewer: ViewerDep, system: SystemName, path: FilePath) -> Response:
    text = await _editable(viewer, system, path)
    return page(
        request, "file_edit.html", viewer.session, system=system, path=path, text=text, saved=False
    )


@router.post("/{system}/edit")
async def save(request: Request, viewer: ViewerDep, system: SystemName) -> Response:
    """The text replaces the file (as an upload with overwrite: all of it or nothing)."""
    form = await read_form(request)
    path, text = form.get("path"), form.get("text").replace("\r\n", "\n")
    data = text.encode()
    if len(data) > EDIT_MAX:
        raise Invalid(f"the editor saves files up to {EDIT_MAX >> 10} KiB")

    async def body() -> AsyncIterator[bytes]:
        yield data

    await viewer.gateway.files.upload(viewer.target(system), path, body(), True, None)
    return page(
        request, "file_edit.html", viewer.session, system=system, path=path, text=text, saved=True
    )
