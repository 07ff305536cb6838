"""Resumable uploads for the page's drag and drop (``static/app.js`` uses them for files
above 8 MiB): begin one, send it in pieces from where it stands, ask where it stands after
a broken connection or a reload, as the API's ``files/uploads`` does for the same caller.

The pieces' path holds ``/files/uploads/``, as the API's, so the request body cap leaves
them to stream (:func:`hpcgate.api.limits.streamed`)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError

from hpcgate.model.bounds import BYTES_ASKED_MAX
from hpcgate.model.errors import Invalid
from hpcgate.model.files import NewUpload, UploadState
from hpcgate.webui.viewer import ViewerDep

router = APIRouter(prefix="/files/uploads")
System = Annotated[str, Query(max_length=64)]
UploadId = Annotated[str, Path(pattern=r"^[0-9a-f]{32}$")]
Offset = Annotated[int, Query(ge=0, le=BYTES_ASKED_MAX)]


def _answer(state: UploadState, status: int = 200) -> Response:
    return JSONResponse(state.model_dump(mode="json"), status_code=status)


@router.post("")
async def begin(request: Request, viewer: ViewerDep, system: System) -> Response:
    """The body: ``{"path", "size", "overwrite"}`` (JSON, as the API's); 201 with its state."""
    try:
        wanted = NewUpload.model_validate_json(await request.body())
    except ValidationError as exc:
        raise Invalid("; ".join(str(e["msg"]) for e in exc.errors())) from None
    return _answer(await viewer.gateway.uploads.begin(viewer.target(system), wanted), 201)


@router.get("/{upload_id}")
async def where(viewer: ViewerDep, system: System, upload_id: UploadId) -> Response:
    """Where it stands: the next piece starts at its ``offset``."""
    return _answer(await viewer.gateway.uploads.state(viewer.target(system), upload_id))


@router.put("/{upload_id}")
async def piece(
    request: Request, viewer: ViewerDep, system: System, upload_id: UploadId, offset: Offset
) -> Response:
    """A piece starting at ``offset`` (409 elsewhere); the last one names the file."""
    target = viewer.target(system)
    return _answer(await viewer.gateway.uploads.append(target, upload_id, offset, request.stream()))
