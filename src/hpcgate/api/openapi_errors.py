"""The error responses of the OpenAPI document, as the API really gives them.

Routes declare the problems their own code raises (``problems.responses``). The statuses
that come from the machinery every route shares are added here, from the shape of each
operation: 401 and 429 where a token is needed (429: its user's and its key's limits; not
where a token is optional), 422 where there is anything to validate, 413 where a JSON body
passes the body limit, 400 where a JSON body cannot even be decoded. Every error
response is ``application/problem+json`` with the Problem schema, and nothing else (FastAPI
would also announce ``application/json``).
"""

from __future__ import annotations

from typing import Any

from hpcgate.api.limits import streamed
from hpcgate.api.openai_format import is_openai
from hpcgate.api.problems import PROBLEM_JSON, WHY
from hpcgate.api.security import needs_token

_PROBLEM = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
_OPENAI = {"application/json": {"schema": {"$ref": "#/components/schemas/OpenAIError"}}}


def implied(path: str, operation: dict[str, Any]) -> set[int]:
    """The statuses the shared machinery gives this operation, whatever its own code does."""
    statuses: set[int] = set()
    if needs_token(operation):
        statuses.update((401, 429))  # 429: the caller's limits ([rate_limits], its key's)
    body = operation.get("requestBody", {}).get("content", {})
    if (operation.get("parameters") or body) and not is_openai(path):
        statuses.add(422)  # /v1 reads its body itself: a bad one is a 400
    if "application/json" in body and not streamed(path):
        statuses.add(413)
    if "application/json" in body and not is_openai(path):
        statuses.add(400)  # a body that cannot be decoded at all (bytes that are not UTF-8)
    return statuses


def declare(path: str, operation: dict[str, Any]) -> None:
    responses = operation.setdefault("responses", {})
    for status in implied(path, operation):
        responses.setdefault(str(status), {"description": WHY[status]})
    for status, response in responses.items():
        if int(status) >= 400:
            response["content"] = _OPENAI if is_openai(path) else _PROBLEM
            if response.get("description") in (None, "", "Validation Error"):
                response["description"] = WHY[int(status)]
