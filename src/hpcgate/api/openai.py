"""``/v1``: OpenAI-compatible routes. ``model`` picks the service; the request goes to one
of its ready replicas and the answer (streamed or not) comes back as the replica sent it.
Authenticate with an hpcgate token as ``Authorization: Bearer`` (the ``openai`` client's
``api_key``). Errors are in OpenAI's format (:mod:`hpcgate.api.openai_format`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse

from hpcgate.api.auth import Caller, GatewayDep, openai_limits
from hpcgate.api.openai_format import OpenAIError
from hpcgate.api.problems import WHY
from hpcgate.model.openai import ModelCard, ModelList
from hpcgate.relaying import proxied
from hpcgate.services.openai import read_call

router = APIRouter(prefix="/v1", tags=["openai"])

_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["model"],
                    "properties": {
                        "model": {
                            "type": "string",
                            "minLength": 1,
                            "description": "A model of GET /v1/models",
                        },
                        "stream": {"type": "boolean", "description": "Answer as SSE chunks"},
                    },
                    "additionalProperties": True,
                    "description": "OpenAI's request body, passed on as sent (except that a"
                    " stream is asked for its usage, which is kept out of the answer)",
                }
            }
        },
    }
}


WHY_HERE = {
    400: "The body is not a JSON object, or has no 'model'",
    403: WHY[403] + "; or the credential is held for its user's consent ([consent]: code"
    " consent_pending, the message names the request and where to approve it)",
    404: "No such model, or its service is not shared with you (code: model_not_found)",
    413: "The body exceeds the gateway's max_request_bytes",
    429: "Over the user's requests per minute, streams at once (a stream: true call) or LLM"
    " tokens of the UTC day (refused until midnight UTC; an answer already running is not"
    " cut): Retry-After and the RateLimit fields say which and until when",
    503: "No ready replica within the wait (Retry-After says when to retry)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the errors a ``/v1`` route gives, in OpenAI's format."""
    return {
        status: {"model": OpenAIError, "description": WHY_HERE.get(status, WHY[status])}
        for status in statuses
    }


@router.get("/models", summary="The models I may use", responses=errors(401, 403, 429))
async def list_models(who: Caller, gateway: GatewayDep) -> ModelList:
    """The models of the services you may use (declared for you, and your own)."""
    models = await gateway.openai.models(who)
    cards = [
        ModelCard(id=m.id, created=int(m.created.timestamp()), owned_by=m.service.name)
        for m in models
    ]
    return ModelList(data=cards)


# hpcgate.api.forwarding answers these POSTs in front of the router, as these routes
# would; the routes document them (OpenAPI) and serve only what it passes on.
async def _send(endpoint: str, request: Request, who: Caller, gateway: GatewayDep) -> Response:
    call = read_call(await request.body())  # bounded by the gateway's max_request_bytes
    await openai_limits(request.scope, gateway, who, call)
    answer = await gateway.openai.call(who, endpoint, call, request.headers.raw)
    return proxied(answer)


async def chat_completions(request: Request, who: Caller, gateway: GatewayDep) -> Response:
    """A chat completion from the model's service (``stream: true``: Server-Sent Events,
    passed on chunk by chunk)."""
    return await _send("chat/completions", request, who, gateway)


async def completions(request: Request, who: Caller, gateway: GatewayDep) -> Response:
    """A text completion from the model's service (``stream: true``: Server-Sent Events)."""
    return await _send("completions", request, who, gateway)


async def embeddings(request: Request, who: Caller, gateway: GatewayDep) -> Response:
    """Embeddings of the input from the model's service."""
    return await _send("embeddings", request, who, gateway)


_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The backend's answer as it sent it: JSON, or with stream: true"
        " text/event-stream chunks ending in 'data: [DONE]'",
        "content": {"application/json": {}, "text/event-stream": {}},
    },
    **errors(400, 401, 403, 404, 413, 429, 502, 503, 504),
}
for _path, _route, _summary in (
    ("/chat/completions", chat_completions, "Create a chat completion"),
    ("/completions", completions, "Create a completion"),
    ("/embeddings", embeddings, "Create embeddings"),
):
    router.add_api_route(
        _path,
        _route,
        methods=["POST"],
        summary=_summary,
        response_class=StreamingResponse,
        responses=_ANSWERS,
        openapi_extra=_BODY,
    )
