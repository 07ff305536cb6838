"""``/api/v1/systems/{system}/files``: the system's filesystems, as the caller's account."""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response, status
from fastapi.responses import StreamingResponse

from hpcgate.api.auth import GatewayDep, TargetDep
from hpcgate.api.problems import problem, responses
from hpcgate.files.ranges import Span, etag, last_modified, requested_span, still_valid
from hpcgate.files.service import Opened
from hpcgate.files.streams import read_out
from hpcgate.model.bounds import BYTES_ASKED_MAX
from hpcgate.model.errors import RangeNotSatisfiable
from hpcgate.model.files import (
    ChangeMode,
    ChangeOwner,
    Checksum,
    Compress,
    Content,
    Extract,
    FileEntry,
    FileType,
    Listing,
    MakeDirectory,
    MakeLink,
    NewUpload,
    Transfer,
    Uploaded,
    UploadState,
)
from hpcgate.model.tasks import Task
from hpcgate.transports.filesystem import ALGORITHMS

router = APIRouter(prefix="/api/v1/systems/{system}/files", tags=["files"])

FilePath = Annotated[
    str,
    Query(
        min_length=1,
        max_length=4096,
        description="Absolute, or relative to your home (or default) directory; no '..'",
    ),
]
Lines = Annotated[int | None, Query(ge=1, le=100_000, description="How many lines")]
Bytes = Annotated[int | None, Query(ge=1, le=1 << 20, description="How many bytes")]
# Every file operation goes through the system's transport: over SSH it can fail (503) or
# time out (504).
READS = responses(400, 401, 403, 404, 409, 422, 503, 504)
WRITES = responses(400, 401, 403, 404, 409, 422, 503, 504, 507)


@router.get("/ls", summary="List a directory", responses=READS)
async def list_directory(
    target: TargetDep,
    path: FilePath,
    gateway: GatewayDep,
    hidden: Annotated[bool, Query(description="Include names starting with '.'")] = False,
    depth: Annotated[int, Query(ge=1, le=32, description="Levels to descend")] = 1,
    numeric: Annotated[bool, Query(description="uid/gid only, no names")] = False,
) -> Listing:
    """Symlinks are listed with their targets and never descended into."""
    return await gateway.files.listing(target, path, hidden, depth, numeric)


@router.get("/stat", summary="Details of one file", responses=READS)
async def stat_file(
    target: TargetDep,
    path: FilePath,
    gateway: GatewayDep,
    dereference: Annotated[bool, Query(description="Follow a final symlink")] = False,
    numeric: bool = False,
) -> FileEntry:
    return await gateway.files.stat(target, path, dereference, numeric)


@router.get("/checksum", summary="A file's digest", responses=READS)
async def checksum(
    target: TargetDep,
    path: FilePath,
    gateway: GatewayDep,
    algorithm: Annotated[str, Query(pattern=f"^({'|'.join(ALGORITHMS)})$")] = "sha256",
) -> Checksum:
    return await gateway.files.checksum(target, path, algorithm)


@router.get("/head", summary="The first lines or bytes of a file", responses=READS)
async def head(
    target: TargetDep,
    path: FilePath,
    gateway: GatewayDep,
    lines: Lines = None,
    bytes: Bytes = None,
) -> Content:
    """10 lines unless ``lines`` or ``bytes`` says otherwise."""
    return await gateway.files.head(target, path, lines, bytes)


@router.get("/tail", summary="The last lines or bytes of a file", responses=READS)
async def tail(
    target: TargetDep,
    path: FilePath,
    gateway: GatewayDep,
    lines: Lines = None,
    bytes: Bytes = None,
) -> Content:
    """10 lines unless ``lines`` or ``bytes`` says otherwise."""
    return await gateway.files.tail(target, path, lines, bytes)


@router.get("/view", summary="A byte range of a file, as text", responses=READS)
async def view(
    target: TargetDep,
    path: FilePath,
    gateway: GatewayDep,
    offset: Annotated[int, Query(ge=0, le=BYTES_ASKED_MAX, description="Byte to start at")] = 0,
    size: Annotated[int, Query(ge=1, le=1 << 20)] = 65536,
) -> Content:
    return await gateway.files.view(target, path, offset, size)


@router.get("/file", summary="What a file holds (its type)", responses=READS)
async def file_type(target: TargetDep, path: FilePath, gateway: GatewayDep) -> FileType:
    return await gateway.files.file_type(target, path)


@router.post(
    "/mkdir", status_code=status.HTTP_201_CREATED, summary="Create a directory", responses=WRITES
)
async def make_directory(target: TargetDep, body: MakeDirectory, gateway: GatewayDep) -> FileEntry:
    return await gateway.files.mkdir(target, body.path, body.parents)


@router.delete(
    "/rm",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Remove a file, link or directory",
    responses=WRITES,
)
async def remove(
    target: TargetDep,
    path: FilePath,
    gateway: GatewayDep,
    recursive: Annotated[
        bool, Query(description="Remove a directory and everything in it")
    ] = False,
) -> Response:
    """A symlink is removed itself, never what it points to. A non-empty directory needs
    ``recursive=true`` (else 409); the roots themselves cannot be removed (403)."""
    await gateway.files.remove(target, path, recursive)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.put("/chmod", summary="Change permission bits", responses=WRITES)
async def change_mode(target: TargetDep, body: ChangeMode, gateway: GatewayDep) -> FileEntry:
    return await gateway.files.chmod(target, body.path, body.mode)


@router.put("/chown", summary="Change owner or group", responses=WRITES)
async def change_owner(target: TargetDep, body: ChangeOwner, gateway: GatewayDep) -> FileEntry:
    """As the caller's account, so the kernel's rules apply: usually only the group, to one
    of the account's own groups."""
    return await gateway.files.chown(target, body.path, body.owner, body.group)


@router.post(
    "/symlink", status_code=status.HTTP_201_CREATED, summary="Create a symlink", responses=WRITES
)
async def make_link(target: TargetDep, body: MakeLink, gateway: GatewayDep) -> FileEntry:
    """The target must lie inside the link's own root (on the local system; inside the roots
    over SSH); the link stores its resolved absolute path."""
    return await gateway.files.symlink(target, body.path, body.target)


@router.get(
    "/download",
    summary="A file's bytes, streamed; Range and conditional requests supported",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/octet-stream": {}}, "description": "The whole file"},
        206: {"content": {"application/octet-stream": {}}, "description": "The range asked"},
        304: {"description": "Not modified (If-None-Match matched the ETag)"},
        **responses(400, 401, 403, 404, 409, 416, 422, 503, 504),
    },
)
async def download(
    target: TargetDep,
    path: FilePath,
    gateway: GatewayDep,
    range_header: Annotated[str | None, Header(alias="Range", max_length=200)] = None,
    if_range: Annotated[str | None, Header(alias="If-Range", max_length=200)] = None,
    if_none_match: Annotated[str | None, Header(alias="If-None-Match", max_length=200)] = None,
) -> Response:
    """Resume a broken download with ``Range: bytes=N-`` and ``If-Range: <ETag>``."""
    opened = await gateway.files.open(target, path)
    try:
        answer = _download(opened, os.path.basename(path), range_header, if_range, if_none_match)
    except BaseException:
        await opened.file.close()
        raise
    if not isinstance(answer, StreamingResponse):
        await opened.file.close()  # nothing to send: 304, 416
    return answer


def _download(
    opened: Opened,
    name: str,
    range_header: str | None,
    if_range: str | None,
    if_none_match: str | None,
) -> Response:
    info = opened.info
    tag, modified = etag(info.inode, info.size, info.modified_ns), last_modified(info.modified_ns)
    headers = {"ETag": tag, "Last-Modified": modified, "Accept-Ranges": "bytes"}
    if if_none_match is not None and tag in (value.strip() for value in if_none_match.split(",")):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    try:
        span = (
            requested_span(range_header, info.size)
            if still_valid(if_range, tag, modified)
            else None
        )
    except RangeNotSatisfiable as exc:
        answer = problem(exc.status, exc.slug, exc.title, exc.detail)
        answer.headers["Content-Range"] = f"bytes */{info.size}"
        return answer
    chosen = span or Span(0, info.size - 1, info.size)
    headers["Content-Length"] = str(chosen.length if info.size else 0)
    headers["Content-Disposition"] = f"attachment; filename*=UTF-8''{_quote(name)}"
    code = status.HTTP_200_OK
    if span is not None:
        headers["Content-Range"] = span.content_range()
        code = status.HTTP_206_PARTIAL_CONTENT
    return StreamingResponse(
        read_out(opened.file, chosen.start, chosen.length if chosen.size else 0),
        status_code=code,
        headers=headers,
        media_type="application/octet-stream",
    )


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")


@router.put(
    "/upload",
    status_code=status.HTTP_201_CREATED,
    summary="Upload a file: the request body is its bytes",
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}},
    responses=responses(400, 401, 403, 404, 409, 422, 503, 504, 507),
)
async def upload(
    target: TargetDep,
    path: FilePath,
    gateway: GatewayDep,
    request: Request,
    overwrite: Annotated[bool, Query(description="Replace an existing file")] = False,
    sha256: Annotated[
        str | None,
        Query(pattern=r"^[0-9a-fA-F]{64}$", description="Refuse the upload unless it matches"),
    ] = None,
) -> Uploaded:
    """Streamed to disk as it arrives, whatever its size, into a hidden file beside the
    target; only once all of it is there (and matches ``sha256``, if given) does it take the
    target's name, in one rename. Without ``overwrite`` an existing target is 409."""
    return await gateway.files.upload(target, path, request.stream(), overwrite, sha256)


UploadId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$", description="From POST uploads")]


@router.post(
    "/uploads",
    status_code=status.HTTP_201_CREATED,
    summary="Start a resumable upload",
    responses=responses(400, 401, 403, 404, 409, 422, 503, 504, 507),
)
async def begin_upload(target: TargetDep, body: NewUpload, gateway: GatewayDep) -> UploadState:
    """Then send the bytes in chunks with ``PUT uploads/{id}?offset=N``. A chunk that broke
    off is resumed from the ``offset`` that ``GET uploads/{id}`` reports. The last chunk
    checks ``sha256`` (if given) and gives the file its name; until then nothing is at
    ``path``."""
    return await gateway.uploads.begin(target, body)


@router.get("/uploads/{upload_id}", summary="Where a resumable upload stands", responses=READS)
async def upload_state(target: TargetDep, upload_id: UploadId, gateway: GatewayDep) -> UploadState:
    return await gateway.uploads.state(target, upload_id)


@router.put(
    "/uploads/{upload_id}",
    summary="Send a chunk of a resumable upload",
    openapi_extra={"requestBody": {"content": {"application/octet-stream": {}}, "required": True}},
    responses=responses(400, 401, 403, 404, 409, 422, 503, 504, 507),
)
async def upload_chunk(
    target: TargetDep,
    upload_id: UploadId,
    gateway: GatewayDep,
    request: Request,
    offset: Annotated[int, Query(ge=0, le=BYTES_ASKED_MAX, description="Where this chunk starts")],
) -> UploadState:
    """409 (with the right ``offset``) if the chunk does not start where the upload stands;
    400 if it runs past the size announced, and then none of it is kept."""
    return await gateway.uploads.append(target, upload_id, offset, request.stream())


@router.delete(
    "/uploads/{upload_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Abandon a resumable upload",
    responses=responses(401, 403, 404, 422),
)
async def abort_upload(target: TargetDep, upload_id: UploadId, gateway: GatewayDep) -> Response:
    await gateway.uploads.abort(target, upload_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


TASKS = responses(400, 401, 403, 404, 409, 422, 503, 504)
ACCEPTED = status.HTTP_202_ACCEPTED


@router.post("/cp", status_code=ACCEPTED, summary="Copy a file or a tree (a task)", responses=TASKS)
async def copy(target: TargetDep, body: Transfer, gateway: GatewayDep) -> Task:
    """Symlinks are copied as links; modes and times are kept. Poll the task it returns."""
    return await gateway.bulk.copy(target, body)


@router.post("/mv", status_code=ACCEPTED, summary="Move or rename (a task)", responses=TASKS)
async def move(target: TargetDep, body: Transfer, gateway: GatewayDep) -> Task:
    """Across filesystems too (then a copy and a removal)."""
    return await gateway.bulk.move(target, body)


@router.post(
    "/compress", status_code=ACCEPTED, summary="Make a tar archive (a task)", responses=TASKS
)
async def compress(target: TargetDep, body: Compress, gateway: GatewayDep) -> Task:
    return await gateway.bulk.compress(target, body)


@router.post(
    "/extract", status_code=ACCEPTED, summary="Unpack a tar archive (a task)", responses=TASKS
)
async def extract(target: TargetDep, body: Extract, gateway: GatewayDep) -> Task:
    """Into a new directory: a ``target`` that exists is a 409. The gateway vets each member:
    absolute names, '..', links that could lead out of ``target``, hard links to no earlier
    file, devices, FIFOs and other special files fail the task (400, naming the member) and
    the directory is removed again. Modes lose setuid, setgid, sticky and group/other write;
    owners are never taken from the archive. Past the configured bounds on entries and bytes
    the task fails with a 413. Progress: the archive's bytes read."""
    return await gateway.bulk.extract(target, body)
