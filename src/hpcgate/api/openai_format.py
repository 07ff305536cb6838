"""Errors on the OpenAI-compatible routes (``/v1``) in OpenAI's own format, so its clients
raise the error class they know (``openai.NotFoundError`` for a 404, and so on)::

    {"error": {"message": "...", "type": "invalid_request_error", "param": null, "code": "..."}}

``code`` is the hpcgate problem slug unless the error names one of OpenAI's
(``model_not_found``); ``type`` follows the status.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

PREFIX = "/v1/"
TYPES = {401: "authentication_error", 403: "permission_error", 404: "invalid_request_error"}


class OpenAIErrorBody(BaseModel):
    message: str
    type: str = Field(description="invalid_request_error, authentication_error, server_error…")
    param: str | None = Field(description="The body field at fault, if one is")
    code: str | None = Field(description="model_not_found, or hpcgate's problem slug")


class OpenAIError(BaseModel):
    """An error as OpenAI's API gives it."""

    error: OpenAIErrorBody


def is_openai(path: str) -> bool:
    return path.startswith(PREFIX) or path == PREFIX.rstrip("/")


def error_type(status: int) -> str:
    if status >= 500:
        return "server_error"
    return TYPES.get(status, "invalid_request_error")


def openai_error(
    status: int,
    message: str,
    code: str | None,
    headers: Mapping[str, str] | None = None,
    param: Any = None,
) -> JSONResponse:
    body = {
        "message": message,
        "type": error_type(status),
        "param": param if isinstance(param, str) else None,
        "code": code,
    }
    answer_headers = dict(headers or {})
    if status == 401:
        answer_headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse({"error": body}, status_code=status, headers=answer_headers)
