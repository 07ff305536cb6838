"""``/api/v1/consents``: a user reads and decides the requests held for their consent.

What is held is the admin's to say (``[consent]``): a new token asking for a marked scope,
or the tokens of a marked OAuth client. Each is answered 202 with a consent request and
does nothing until its user approves it here with another credential of theirs (see
:mod:`hpcgate.consent` for which may decide). On ``/v1`` and on a WebSocket handshake a
held credential is refused 403 instead (OpenAI's error, code ``consent_pending``; a
problem), naming the request and where to approve it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Path, Query

from hpcgate.api.auth import Caller, GatewayDep
from hpcgate.api.openai_format import is_openai
from hpcgate.api.problems import PROBLEM_JSON, Problem, responses
from hpcgate.api.security import needs_token
from hpcgate.config import ConsentConfig
from hpcgate.consent import LIST_MAX
from hpcgate.model.consents import CONSENT_ID_PATTERN, ConsentAnswer, ConsentRequest, ConsentState

router = APIRouter(prefix="/api/v1/consents", tags=["consents"])

ConsentId = Annotated[str, Path(pattern=CONSENT_ID_PATTERN, description="The request's id")]


def _problem(description: str) -> dict[str, Any]:
    return {"model": Problem, "content": {PROBLEM_JSON: {}}, "description": description}


#: The 202 of a request held for consent, for the routes that may answer it.
HELD: dict[int | str, dict[str, Any]] = {
    202: {
        "model": ConsentAnswer,
        "description": "Held for the user's consent ([consent]): nothing was done. The answer"
        " names the consent request (also in the Hpcgate-Consent header); a new token's secret"
        " is in it, and the token is refused until its user approves",
    }
}
_DECIDE = {
    **responses(401, 403, 404),
    409: _problem("The request was already decided the other way"),
    410: _problem("The request lapsed undecided"),
}
_DECISION = (
    " Only the request's user decides, and not with the credential that asked, the"
    " credential held, a token issued from the asking one, another token of the OAuth client"
    " that asked, an API key, or a token of a client held for consent (403): with another"
    " credential of theirs, e.g. their own login."
    " The same decision again answers as the first did; the other one is a 409."
)


@router.get("", summary="List your consent requests", responses=responses(401, 403))
async def list_consents(
    who: Caller,
    gateway: GatewayDep,
    state: Annotated[ConsentState | None, Query(description="Only those in this state")] = None,
    limit: Annotated[int, Query(ge=1, le=LIST_MAX, description="At most this many")] = 50,
) -> list[ConsentRequest]:
    """Your own requests, newest first: what each asks, who asked (user, token, OAuth
    client), until when it waits, and its state."""
    return await gateway.consents.list(who, state, limit)


@router.get("/{consent_id}", summary="Read a consent request", responses=responses(401, 403, 404))
async def get_consent(who: Caller, gateway: GatewayDep, consent_id: ConsentId) -> ConsentRequest:
    """One of your requests (another user's: 404)."""
    return await gateway.consents.get(who, consent_id)


@router.post(
    "/{consent_id}/approve",
    summary="Approve a consent request",
    description="The held credential acts from now on (a token until it expires or is"
    " revoked)." + _DECISION,
    responses=_DECIDE,
)
async def approve_consent(
    who: Caller, gateway: GatewayDep, consent_id: ConsentId
) -> ConsentRequest:
    return await gateway.consents.decide(who, consent_id, approve=True)


@router.post(
    "/{consent_id}/deny",
    summary="Deny a consent request",
    description="The held credential stays refused (a new token is revoked)." + _DECISION,
    responses=_DECIDE,
)
async def deny_consent(who: Caller, gateway: GatewayDep, consent_id: ConsentId) -> ConsentRequest:
    return await gateway.consents.decide(who, consent_id, approve=False)


def install(app: FastAPI, config: ConsentConfig) -> None:
    """With marked ``clients``, any route a token may call can answer 202 (a marked client's
    token waiting for its user): declare it on each, once, when the document is built."""
    if not config.clients:
        return
    build = app.openapi

    def document() -> dict[str, Any]:
        fresh = app.openapi_schema is None
        schema = build()
        if fresh:
            _declare_held(schema)
        return schema

    app.openapi = document  # type: ignore[method-assign]


def _declare_held(schema: dict[str, Any]) -> None:
    answer = {"$ref": "#/components/schemas/ConsentAnswer"}
    held = {
        "description": HELD[202]["description"],
        "content": {"application/json": {"schema": answer}},
    }
    for path, item in schema.get("paths", {}).items():
        if is_openai(path):  # refused 403 there (OpenAI's clients read a 202 as success)
            continue
        for operation in item.values():
            if needs_token(operation):  # where it is optional, a held one is none
                operation.setdefault("responses", {}).setdefault("202", held)
