"""A small chat page for a service that answers models (``models`` in its spec): the
browser sends the conversation here and reads the answer's tokens as they stream; the
gateway calls ``/v1`` for it with the session's Principal, metered as any call."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Path, Request
from fastapi.responses import Response

from hpcgate.model.errors import PayloadTooLarge
from hpcgate.services.openai import read_call
from hpcgate.webui.render import page
from hpcgate.webui.services import ServiceName, streamed
from hpcgate.webui.viewer import ViewerDep

router = APIRouter()
#: The largest conversation the page sends (the API's own body bound applies too).
BODY_MAX = 1 << 20
Endpoint = Annotated[Literal["chat/completions", "completions"], Path()]
JSON = [(b"content-type", b"application/json")]


@router.get("/services/{name}/chat")
async def chat_page(request: Request, viewer: ViewerDep, name: ServiceName) -> Response:
    service = await viewer.gateway.services.get(viewer.who, name)
    return page(request, "chat.html", viewer.session, service=service)


@router.post("/v1/{endpoint:path}")
async def call(request: Request, viewer: ViewerDep, endpoint: Endpoint) -> Response:
    """As POST /v1/{endpoint} (chat completions or completions) for the signed-in caller:
    the body is sent on as the API sends it, the answer (streamed or not) passed back."""
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > BODY_MAX:
            raise PayloadTooLarge(f"a conversation is at most {BODY_MAX} bytes")
    answer = await viewer.gateway.openai.call(viewer.who, endpoint, read_call(bytes(body)), JSON)
    return streamed(answer)
